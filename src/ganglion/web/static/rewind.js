// Regenerate the last answer, or edit the owner's last message (which answers it again):
// one `rewind` frame (ganglion/web/frames.py). Offered on the conversation's last turn
// only, when it is the owner's and nothing is under way. The old bubbles stay, dimmed,
// until the server accepts; then they make way for the new turn (a refusal leaves them
// and says why).
//
// A regenerated answer keeps the earlier ones as versions: the last answer shows
// "‹ 2/3 ›" when it has more than one, and choosing another (`choose_version`) shows it
// in every tab (the server says `thread_changed` 'version', the page reads it again).

import { el } from "./markdown.js";

// The codes of a rewind (or a choice of version) the server refused.
const REFUSALS = { busy: 1, not_last: 1, nothing_to_rewind: 1, compacted: 1, not_stored: 1, deleted: 1 };

// `app`: {transcript, busy(), sendFrame(frame), randomHex(n), userBubble(text), showBanner(text)}
export function initRewind(app) {
  const { transcript } = app;
  let pending = null; // {id, nodes, text}: a rewind sent, not yet answered
  let editing = null; // the user bubble whose editor is open
  let versions = null; // {turnId, turns}: the versions of the last turn's answer, as asked
  let choosing = false; // a choice sent, the conversation not yet read again

  // The bubble of the owner's message that opened the last turn, if that turn is the
  // owner's (a reminder's or a heartbeat's chip can be last too).
  function lastTurn() {
    const inputs = transcript.querySelectorAll(".msg.user[data-turn], .chip[data-turn]");
    const last = inputs[inputs.length - 1];
    return last && last.classList.contains("msg") ? last : null;
  }

  function action(text, label, onClick) {
    const button = el("button", "action turn-action", text);
    button.type = "button";
    button.setAttribute("aria-label", label);
    button.addEventListener("click", onClick);
    return button;
  }

  // Show the controls where they apply now (call it whenever the conversation changed).
  function update() {
    const last = pending || app.busy() ? null : lastTurn();
    if (editing && editing !== last) closeEditor();
    if (editing) return;
    for (const node of transcript.querySelectorAll(".turn-action")) node.remove();
    if (!last) return;
    const row = el("div", "actions turn-action");
    row.append(action("Edit", "Edit your last message", () => openEditor(last)));
    last.append(row);
    const replies = transcript.querySelectorAll(".msg.assistant[data-turn]");
    const reply = [...replies].reverse().find((node) => node.dataset.turn === last.dataset.turn);
    if (reply) {
      const actions = reply.querySelector(".actions") || reply.appendChild(el("div", "actions"));
      const turnId = last.dataset.turn;
      if (versions?.turnId !== turnId) {
        versions = { turnId, turns: null };
        app.sendFrame({ type: "versions", turn_id: turnId });
      } else if (versions.turns && versions.turns.length > 1) actions.append(versionPicker(versions));
      actions.append(action("Regenerate", "Regenerate this answer", () => rewind(last, null)));
    }
  }

  // "‹ 2/3 ›": the version shown of the last answer, and the way to the others.
  function versionPicker({ turnId, turns }) {
    const at = turns.indexOf(turnId);
    const picker = el("span", "versions turn-action");
    picker.setAttribute("role", "group");
    picker.setAttribute("aria-label", "Versions of this answer");
    const step = (by, text, label) => {
      const button = action(text, label, () => choose(turns[at + by]));
      button.disabled = choosing || at + by < 0 || at + by >= turns.length;
      return button;
    };
    const count = el("span", "count", `${at + 1}/${turns.length}`);
    count.setAttribute("aria-label", `Version ${at + 1} of ${turns.length}`);
    picker.append(step(-1, "‹", "Previous version"), count, step(1, "›", "Next version"));
    return picker;
  }

  function choose(turnId) {
    if (!app.sendFrame({ type: "choose_version", turn_id: turnId })) {
      app.showBanner("Not connected: try again once the chat is back.");
      return;
    }
    choosing = true;
    update();
  }

  // The answer to a `versions` request.
  function known(frame) {
    if (versions?.turnId !== frame.turn_id) return;
    versions = { turnId: frame.turn_id, turns: frame.turns };
    update();
  }

  function openEditor(node) {
    editing = node;
    for (const control of transcript.querySelectorAll(".turn-action")) control.remove();
    const text = node.querySelector(".text");
    const form = el("form", "editor");
    const label = el("label", "sr-only", "Edit your message");
    const box = el("textarea");
    box.id = "edit-box";
    label.htmlFor = box.id;
    box.dir = "auto";
    box.rows = 3;
    box.value = text.textContent;
    const cancel = el("button", "link", "Cancel");
    cancel.type = "button";
    const save = el("button", "save", "Save");
    save.type = "submit";
    const buttons = el("div", "editor-buttons");
    buttons.append(cancel, save);
    form.append(label, box, buttons);
    text.hidden = true;
    node.classList.add("editing");
    node.append(form);

    const stop = () => {
      closeEditor();
      update();
      node.querySelector(".turn-action button")?.focus();
    };
    box.addEventListener("input", () => (save.disabled = !box.value.trim()));
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") stop();
      else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    cancel.addEventListener("click", stop);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!box.value.trim()) return;
      const value = box.value;
      closeEditor();
      rewind(node, value);
    });
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function closeEditor() {
    if (!editing) return;
    editing.querySelector("form.editor")?.remove();
    editing.querySelector(".text").hidden = false;
    editing.classList.remove("editing");
    editing = null;
  }

  // `text` null: regenerate; else the edited message.
  function rewind(from, text) {
    const id = app.randomHex(8);
    const frame = { type: "rewind", id, turn_id: from.dataset.turn };
    if (text !== null) frame.text = text;
    if (!app.sendFrame(frame)) {
      app.showBanner("Not connected: try again once the chat is back.");
      update();
      return;
    }
    const nodes = [];
    for (let node = from; node; node = node.nextElementSibling) nodes.push(node);
    for (const node of nodes) node.classList.add("rewinding");
    pending = { id, nodes, text: text ?? from.querySelector(".text").textContent };
    update();
  }

  // The `accepted` of the rewind sent: the old turn's bubbles make way for the new turn's
  // message, returned as an outgoing entry for the app to follow like any send. Bubbles
  // of the new turn that streamed in already came after the old ones, and stay.
  function accepted(frame) {
    if (!pending || frame.id !== pending.id) return null;
    const { nodes, text } = pending;
    pending = null;
    const node = app.userBubble(text);
    nodes[0].before(node);
    for (const old of nodes) old.remove();
    return { id: frame.id, text, node, state: "pending", turnId: null };
  }

  // An `error`: true when it refused the rewind sent (its bubbles stay as they were).
  function refused(frame) {
    if (choosing && !frame.id && frame.code in REFUSALS) {
      choosing = false;
      versions = null; // asked again: what can be chosen may have changed
      app.showBanner(frame.message);
      update();
      return true;
    }
    if (!pending || frame.id !== pending.id) return false;
    for (const node of pending.nodes) node.classList.remove("rewinding");
    pending = null;
    app.showBanner(frame.message);
    update();
    return true;
  }

  // Answer the failed turn `turnId` again in place, if it is the last one and nothing is
  // under way: true when a rewind was sent.
  function retry(turnId) {
    const last = pending || app.busy() ? null : lastTurn();
    if (!last || last.dataset.turn !== turnId) return false;
    closeEditor();
    rewind(last, null);
    return true;
  }

  // A fresh history replaces every bubble: what was sent is in it, or was not taken.
  function reset() {
    pending = null;
    editing = null;
    versions = null;
    choosing = false;
  }

  return { update, accepted, refused, reset, retry, known };
}
