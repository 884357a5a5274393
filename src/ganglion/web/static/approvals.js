// A tool call that waits for the owner's yes (an `approval` frame, ganglion/web/frames.py):
// a card with the exact call and three buttons, Allow once, Always allow this (it adds a
// rule naming exactly this call to approvals.yaml, shown only when one can) and Deny,
// answered with one `approve` frame. The card stays, saying what came of it, when the
// question is settled (`approval_settled`: here, in another tab, by a timeout or Stop).
// A question still open when the page is reloaded is sent again after the history.

import { el } from "./markdown.js";

const OUTCOMES = {
  once: "Allowed once",
  always: "Always allowed (rule added to approvals.yaml)",
  owner: "Denied",
  timeout: "Denied: no answer in time",
  stop: "Denied: the answer was stopped",
  ended: "Denied: the turn ended",
  nobody: "Denied: no one to ask",
};

// `app`: {append(node), sendFrame(frame), announce(text), noteInBackground(what, text),
//         setActivity(text), thread}
export function initApprovals(app) {
  const cards = new Map(); // approval id -> card, while it is on the page

  function button(card, text, answer, kind) {
    const node = el("button", `approval-button ${kind}`, text);
    node.type = "button";
    node.dataset.answer = answer;
    node.addEventListener("click", () => {
      if (!app.sendFrame({ type: "approve", approval_id: card.dataset.approval, answer })) return;
      for (const other of card.querySelectorAll("button")) other.disabled = true;
      card.querySelector(".approval-state").textContent = "Sending your answer…";
    });
    return node;
  }

  function ask(frame) {
    const known = cards.get(frame.approval_id);
    if (known && known.isConnected) return; // asked again after a reconnect: shown already
    const card = el("section", "approval");
    card.dataset.approval = frame.approval_id;
    card.dataset.turn = frame.turn_id;
    card.setAttribute("role", "group");
    card.setAttribute("aria-label", "Approval needed");
    const background = frame.from_thread !== app.thread;
    const who = background ? "Background work (" + frame.from_thread + ") wants to run" : "Ganglion wants to run";
    card.append(el("p", "approval-title", `${who} this. Allow it?`));
    const call = el("pre", "approval-call", frame.call);
    call.dir = "ltr";
    card.append(call);
    const until = new Date(frame.expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    card.append(el("p", "approval-why", `Asked by ${frame.why}. Denied if not answered by ${until}.`));
    const actions = el("div", "approval-actions");
    actions.append(button(card, "Allow once", "allow", "allow"));
    if (frame.always) actions.append(button(card, "Always allow this", "always", "always"));
    actions.append(button(card, "Deny", "deny", "deny"));
    card.append(actions);
    const state = el("p", "approval-state");
    state.setAttribute("role", "status");
    card.append(state);
    cards.set(frame.approval_id, card);
    app.append(card);
    if (!background) app.setActivity("waiting for your answer…");
    app.announce(`Approval needed: ${frame.call}`);
    app.noteInBackground("Approval needed", frame.call);
  }

  function settled(frame) {
    const card = cards.get(frame.approval_id);
    if (!card) return;
    const by = frame.by && !["owner", "ganglion"].includes(frame.by) ? ` by ${frame.by}` : "";
    card.classList.add("settled", frame.outcome === "once" || frame.outcome === "always" ? "allowed" : "denied");
    card.querySelector(".approval-actions").remove();
    card.querySelector(".approval-state").textContent = (OUTCOMES[frame.outcome] || frame.outcome) + by;
    cards.delete(frame.approval_id);
  }

  // An answer refused (`error` `not_open`): the buttons come back if it is still open.
  function refused() {
    for (const card of cards.values()) {
      for (const node of card.querySelectorAll("button")) node.disabled = false;
      const state = card.querySelector(".approval-state");
      if (state) state.textContent = "";
    }
  }

  return { ask, settled, refused };
}
