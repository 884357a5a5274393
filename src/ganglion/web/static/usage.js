// The header's usage view: what this conversation spent (in all and today), what every
// conversation spent today, and the model it talks to (`/model`). Asked with a `usage`
// frame when opened and after each answer while it is open; the numbers are the
// store's, as `/usage` says them (ganglion/web/frames.py).

import { el } from "./markdown.js";

function tokens(totals) {
  const mark = totals.estimated ? "~" : "";
  const cost = Object.entries(totals.cost)
    .map(([currency, amount]) => `${amount.toFixed(4)} ${currency}`)
    .join(" + ");
  const calls = `${totals.calls} call${totals.calls === 1 ? "" : "s"}`;
  return `${mark}${totals.tokens_in.toLocaleString()} in, ${mark}${totals.tokens_out.toLocaleString()} out, ${calls}` + (cost ? `, ${cost}` : "");
}

// `app`: {button, panel, sendFrame(frame)}
export function initUsage(app) {
  const { button, panel } = app;

  function close() {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }

  function ask() {
    if (!panel.hidden) app.sendFrame({ type: "usage" });
  }

  button.addEventListener("click", () => {
    if (!panel.hidden) return close();
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    panel.replaceChildren(el("p", "usage-note", "Counting…"));
    ask();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) {
      close();
      button.focus();
    }
  });

  function show(frame) {
    const model = frame.model ? `${frame.model} (${frame.model_id})` : `${frame.model_id} (the default)`;
    const rows = [
      ["Model", model],
      ["This conversation", tokens(frame.conversation)],
      [`Here today (${frame.day})`, tokens(frame.conversation_today)],
      ["Every conversation today", tokens(frame.everyone_today)],
    ];
    const list = el("dl", "usage-list");
    for (const [name, value] of rows) list.append(el("dt", "", name), el("dd", "", value));
    const estimated = [frame.conversation, frame.conversation_today, frame.everyone_today].some((t) => t.estimated);
    const notes = [el("p", "usage-note", "/model NAME switches this conversation's model; /usage and /budget say more.")];
    if (estimated) notes.unshift(el("p", "usage-note", "~ Ganglion's estimate: the model server did not report its usage."));
    panel.replaceChildren(list, ...notes);
  }

  return { show, refresh: ask };
}
