// What the owner does to one conversation of the list, from its "…" menu: rename it in
// place, archive or unarchive it, delete it. Delete is set apart from the rest, asks in a
// styled dialog (never the browser's confirm), and waits UNDO_MS with an Undo before it
// is sent: until then the conversation is only hidden. Everything works by keyboard: the
// menu's items by arrow keys, Esc closes what is open and gives the focus back to what
// opened it.

import { el } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const UNDO_MS = 6000;
let ctx = null; // {thread, sendFrame, newChatHref(), focusList(row, step), settled()}
let openMenu = null; // {menu, button}
const deleting = new Map(); // thread id -> {timer, item}

export function initThreadMenu(context) {
  ctx = context;
  document.addEventListener("pointerdown", (event) => {
    if (openMenu && !openMenu.menu.contains(event.target) && event.target !== openMenu.button) closeMenu(false);
  });
  $("toast-undo").addEventListener("click", undoDelete);
  $("toast-close").addEventListener("click", () => flushDeletes());
  // A delete waiting for its Undo is sent when the page goes: it was confirmed.
  window.addEventListener("pagehide", () => flushDeletes());
}

// The list's row of a conversation as it is now (the list is drawn again when it changes).
function rowOf(threadId) {
  return document.querySelector(`#threads li[data-thread="${CSS.escape(threadId)}"]`);
}

// Whether something of the list is being worked on (a menu, a rename, the dialog): the
// list is not drawn again under it until it is done (`ctx.settled()`).
export function busyWithList() {
  return openMenu !== null || $("confirm").open || document.querySelector("#threads input.rename") !== null;
}

// Whether the conversation is deleted here and waits for its Undo (the list hides it).
export function isDeleting(threadId) {
  return deleting.has(threadId);
}

export function menuButton(item, archived) {
  const button = el("button", "icon more", "…");
  button.type = "button";
  button.tabIndex = -1;
  button.setAttribute("aria-label", `Actions for “${item.title}”`);
  button.setAttribute("aria-haspopup", "menu");
  button.setAttribute("aria-expanded", "false");
  button.title = "Rename, archive or delete";
  button.addEventListener("click", () => {
    if (openMenu?.button === button) closeMenu(true);
    else showMenu(button, item, archived);
  });
  return button;
}

function menuItem(text, onChoose, className = "") {
  const item = el("button", `menuitem ${className}`.trim(), text);
  item.type = "button";
  item.setAttribute("role", "menuitem");
  item.tabIndex = -1;
  item.addEventListener("click", () => {
    closeMenu(false);
    onChoose();
  });
  return item;
}

function showMenu(button, item, archived) {
  closeMenu(false);
  const row = button.closest("li");
  const menu = el("div", "menu");
  menu.setAttribute("role", "menu");
  menu.setAttribute("aria-label", `“${item.title}”`);
  menu.append(
    menuItem("Rename", () => rename(rowOf(item.thread_id) || row, item)),
    menuItem(archived ? "Unarchive" : "Archive", () => {
      ctx.sendFrame({ type: "archive", thread_id: item.thread_id, archived: !archived });
      ctx.focusList(rowOf(item.thread_id) || row, 1);
    }),
    el("hr"),
    menuItem("Delete…", () => confirmDelete(rowOf(item.thread_id) || row, item), "danger"),
  );
  menu.querySelector("hr").setAttribute("role", "separator");
  menu.addEventListener("keydown", (event) => {
    const items = [...menu.querySelectorAll('[role="menuitem"]')];
    const at = items.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(at + step + items.length) % items.length].focus();
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      items[event.key === "Home" ? 0 : items.length - 1].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closeMenu(true);
    } else if (event.key === "Tab") closeMenu(false);
  });
  row.append(menu);
  button.setAttribute("aria-expanded", "true");
  openMenu = { menu, button };
  menu.querySelector('[role="menuitem"]').focus();
}

// `refocus`: the focus goes back to the "…" button that opened the menu.
function closeMenu(refocus) {
  if (!openMenu) return;
  const { menu, button } = openMenu;
  openMenu = null;
  menu.remove();
  button.setAttribute("aria-expanded", "false");
  if (refocus) button.focus();
  setTimeout(ctx.settled); // after the choice made in it, which may open the next thing
}

export function menuIsOpen() {
  return openMenu !== null;
}

// The title becomes a text box: Enter (or leaving it) saves, Esc keeps the old title.
function rename(row, item) {
  const link = row.querySelector("a");
  const box = el("input", "rename");
  box.type = "text";
  box.value = item.title;
  box.dir = "auto";
  box.maxLength = 200;
  box.setAttribute("aria-label", `Rename “${item.title}”`);
  link.hidden = true;
  row.insertBefore(box, link);
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const title = box.value.trim();
    if (save && title && title !== item.title) {
      link.textContent = title;
      ctx.sendFrame({ type: "rename", thread_id: item.thread_id, title });
    }
    box.remove();
    link.hidden = false;
    link.focus();
    ctx.settled();
  };
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      finish(false);
    }
  });
  box.addEventListener("blur", () => finish(true));
  box.focus();
  box.select();
}

function confirmDelete(row, item) {
  const dialog = $("confirm");
  $("confirm-text").textContent = `“${item.title}” and its messages, files and reminders go for good.`;
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    () => {
      const now = rowOf(item.thread_id) || row;
      if (dialog.returnValue === "delete") scheduleDelete(now, item);
      else now.querySelector("button.more")?.focus();
      ctx.settled();
    },
    { once: true },
  );
  dialog.showModal();
  $("confirm-cancel").focus();
}

// Hidden now, sent once the Undo has had its time (or the toast is dismissed).
function scheduleDelete(row, item) {
  flushDeletes(); // one Undo at a time: an earlier delete is confirmed by the next
  ctx.focusList(row, 1);
  row.hidden = true;
  deleting.set(item.thread_id, { item, row, timer: setTimeout(() => flushDeletes(), UNDO_MS) });
  $("toast-text").textContent = `Deleted “${item.title}”.`;
  $("toast").hidden = false;
}

function undoDelete() {
  for (const [threadId, { timer, row }] of deleting) {
    clearTimeout(timer);
    const now = rowOf(threadId) || row;
    now.hidden = false;
    now.querySelector("a")?.focus();
  }
  deleting.clear();
  $("toast").hidden = true;
}

function flushDeletes() {
  let leave = false;
  for (const [threadId, { timer }] of deleting) {
    clearTimeout(timer);
    ctx.sendFrame({ type: "delete", thread_id: threadId });
    if (threadId === ctx.thread) leave = true;
  }
  deleting.clear();
  $("toast").hidden = true;
  if (leave) location.href = ctx.newChatHref();
}
