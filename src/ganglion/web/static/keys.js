// The chat's keyboard shortcuts (listed on the welcome screen), as ChatGPT's are:
// Ctrl/Cmd+Shift+O a new chat, Ctrl/Cmd+K the search, Shift+Esc the message box, and Esc
// stops the answer being written (when nothing else that Esc closes is open: a menu, an
// editor, the drawer, a dialog, the command list — those take it first).

import { drawerIsOpen, focusSearch, newChat, openDrawer } from "./sidebar.js";

// `app`: {input, stop(), isRunning()}
export function initKeys(app) {
  document.addEventListener("keydown", (event) => {
    const command = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (command && event.shiftKey && key === "o") {
      event.preventDefault();
      newChat();
    } else if (command && !event.shiftKey && key === "k") {
      event.preventDefault();
      focusSearch();
    } else if (event.key === "Escape" && event.shiftKey) {
      event.preventDefault();
      if (drawerIsOpen()) openDrawer(false);
      app.input.focus();
    } else if (event.key === "Escape" && !event.defaultPrevented && app.isRunning()) {
      if (document.querySelector("dialog[open], form.editor, .menu")) return;
      event.preventDefault();
      app.stop();
    }
  });
}
