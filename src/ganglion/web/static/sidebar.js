// The list of conversations: a sidebar on wide screens, a drawer on phones. Newest first,
// under the day they were last used (Today, Yesterday, Previous 7 days, Previous 30 days,
// then by month, in the reader's own time zone), with New chat, a "…" menu per conversation (threadmenu.js: rename, archive, delete) and
// a search over every conversation's text.
//
// By keyboard the list is one tab stop: the arrow keys (and Home, End) move between the
// conversations, ArrowRight reaches the "…" of the one in focus and ArrowLeft comes back.
// The drawer keeps the focus inside it while it is open (the chat behind it is inert);
// Esc closes it and gives the focus back to the button that opened it.

import { el } from "./markdown.js";
import { busyWithList, initThreadMenu, isDeleting, menuButton, menuIsOpen } from "./threadmenu.js";

const $ = (id) => document.getElementById(id);
let ctx = null;
let showingArchived = false;
let refreshTimer = null;
let searchTimer = null;

export function refreshThreads() {
  if (!ctx) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => ctx.sendFrame({ type: "list_threads", archived: showingArchived }), 150);
}

// Show the archived conversations (`archived`) or the others.
export function showList(archived) {
  showingArchived = archived;
  $("show-archived").setAttribute("aria-pressed", String(showingArchived));
  $("show-archived").textContent = showingArchived ? "Back to conversations" : "Archived";
  refreshThreads();
}

function isDrawer() {
  return getComputedStyle($("open-drawer")).display !== "none";
}

export function drawerIsOpen() {
  return document.body.classList.contains("drawer-open");
}

export function openDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  $("scrim").hidden = !open;
  $("open-drawer").setAttribute("aria-expanded", String(open));
  $("chat").inert = open; // the focus stays in the drawer
  if (open) $("search").focus();
  else $("open-drawer").focus();
}

// What Tab reaches while the drawer is open: the drawer's controls, and the Undo of a
// delete made in it.
function tabbables() {
  const within = [$("sidebar"), ...($("toast").hidden ? [] : [$("toast")])];
  return within.flatMap((box) =>
    [...box.querySelectorAll("a[href], button, input, [tabindex]")].filter(
      (node) => node.tabIndex >= 0 && !node.disabled && node.getClientRects().length > 0,
    ),
  );
}

// Tab and Shift+Tab go round the open drawer, never out of it to the page behind.
function trapFocus(event) {
  if (event.key !== "Tab" || !drawerIsOpen() || $("confirm").open) return;
  const all = tabbables();
  if (!all.length) return;
  const at = all.indexOf(document.activeElement);
  const next = event.shiftKey ? (at <= 0 ? all.length - 1 : at - 1) : at === -1 || at === all.length - 1 ? 0 : at + 1;
  event.preventDefault();
  all[next].focus();
}

// Ctrl+K: the search box, in the drawer on a phone.
export function focusSearch() {
  if (isDrawer() && !drawerIsOpen()) openDrawer(true);
  $("search").focus();
  $("search").select();
}

function links() {
  return [...$("threads").querySelectorAll("li.thread:not([hidden]) > a:not([hidden])")];
}

// The one link of the list that Tab reaches: `link`.
function rove(link) {
  for (const other of links()) other.tabIndex = other === link ? 0 : -1;
}

// The focus on the conversation `step` rows after `row` (or the one before, at the end).
function focusList(row, step) {
  const all = links();
  const at = all.indexOf(row.querySelector("a"));
  const next = all[at + step] || all[at - 1] || null;
  if (next) {
    rove(next);
    next.focus();
  } else $("search").focus();
}

function onListKey(event) {
  if (menuIsOpen() || event.target.matches("input")) return;
  const all = links();
  const row = event.target.closest("li.thread");
  const link = row?.querySelector("a");
  const at = all.indexOf(link);
  let next = null;
  if (event.key === "ArrowDown") next = all[Math.min(at + 1, all.length - 1)];
  else if (event.key === "ArrowUp") next = all[Math.max(at - 1, 0)];
  else if (event.key === "Home") next = all[0];
  else if (event.key === "End") next = all[all.length - 1];
  else if (event.key === "ArrowRight" && event.target === link) {
    event.preventDefault();
    row.querySelector("button.more").focus();
    return;
  } else if (event.key === "ArrowLeft" && event.target !== link && link) {
    event.preventDefault();
    link.focus();
    return;
  } else return;
  event.preventDefault();
  if (next) {
    rove(next);
    next.focus();
  }
}

const DAY_MS = 86_400_000;

// The heading a conversation last used at `seconds` (since the epoch) is listed under.
export function dayGroup(seconds, now = new Date()) {
  if (seconds === null || seconds === undefined) return "Today"; // nothing said yet
  const when = new Date(seconds * 1000);
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const days = Math.floor((today - new Date(when.getFullYear(), when.getMonth(), when.getDate())) / DAY_MS + 0.5);
  if (days <= 0) return "Today";
  if (days === 1) return "Yesterday";
  if (days <= 7) return "Previous 7 days";
  if (days <= 30) return "Previous 30 days";
  const month = { month: "long", year: when.getFullYear() === now.getFullYear() ? undefined : "numeric" };
  return when.toLocaleDateString(undefined, month);
}

let waiting = null; // a list that came while the owner was busy with the one shown
function settled() {
  if (waiting && !busyWithList()) renderThreads(waiting);
}

function renderThreads(frame) {
  if (busyWithList()) {
    waiting = frame;
    return;
  }
  waiting = null;
  const list = $("threads");
  const active = document.activeElement;
  const focused = active?.closest?.("#threads li.thread")?.dataset.thread;
  const part = active?.matches?.("button.more") ? "button.more" : "a";
  list.replaceChildren();
  if (!frame.items.length) {
    list.append(el("li", "empty", frame.archived ? "No archived conversations." : "No conversations yet."));
  }
  let group = null;
  for (const item of frame.items) {
    const day = dayGroup(item.updated_at);
    if (day !== group) {
      group = day;
      const heading = el("li", "day");
      heading.setAttribute("role", "presentation");
      heading.append(el("h2", "", day));
      list.append(heading);
    }
    const li = el("li", "thread");
    li.dataset.thread = item.thread_id;
    li.hidden = isDeleting(item.thread_id);
    const link = el("a", "", item.title);
    link.href = `/c/${item.thread_id}`;
    link.dir = "auto";
    link.tabIndex = -1;
    link.addEventListener("focus", () => rove(link));
    if (item.thread_id === ctx.thread) {
      link.setAttribute("aria-current", "page");
      ctx.setTitle(item.title);
    }
    li.append(link, menuButton(item, frame.archived));
    list.append(li);
  }
  const row = focused && list.querySelector(`li[data-thread="${CSS.escape(focused)}"]`);
  rove(row?.querySelector("a") || list.querySelector('a[aria-current="page"]') || links()[0]);
  row?.querySelector(part)?.focus(); // the focus stays where it was
}

// The snippet marks the matched words with [ and ]: shown as <mark>, as text.
function snippet(text) {
  const node = el("span", "snippet");
  node.dir = "auto";
  text.split(/(\[[^\]]*\])/).forEach((part) => {
    if (part.startsWith("[") && part.endsWith("]")) node.append(el("mark", "", part.slice(1, -1)));
    else if (part) node.append(document.createTextNode(part));
  });
  return node;
}

function renderResults(frame) {
  const box = $("results");
  if (frame.query !== $("search").value.trim()) return; // an answer to an older query
  box.replaceChildren();
  box.hidden = false;
  if (!frame.hits.length) box.append(el("p", "empty", "Nothing found."));
  for (const hit of frame.hits) {
    const link = el("a", "hit");
    link.href = `/c/${hit.thread_id}`;
    link.append(el("strong", "", hit.title), snippet(hit.snippet));
    box.append(link);
  }
}

function newChatHref() {
  return `/c/web_${ctx.randomHex(8)}`;
}

export function newChat() {
  location.href = $("new-chat").href;
}

export function initSidebar(context) {
  ctx = context;
  $("new-chat").href = newChatHref();
  initThreadMenu({ thread: ctx.thread, sendFrame: ctx.sendFrame, newChatHref, focusList, settled });
  $("open-drawer").addEventListener("click", () => openDrawer(!drawerIsOpen()));
  $("close-drawer").addEventListener("click", () => openDrawer(false));
  $("scrim").addEventListener("click", () => openDrawer(false));
  $("threads").addEventListener("keydown", onListKey);
  document.addEventListener("keydown", trapFocus);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && drawerIsOpen() && !event.defaultPrevented && !$("confirm").open) {
      event.preventDefault();
      openDrawer(false);
    }
  });
  // Past the width of a drawer, nothing is inert.
  matchMedia("(max-width: 760px)").addEventListener("change", (query) => {
    if (!query.matches && drawerIsOpen()) openDrawer(false);
  });
  $("show-archived").addEventListener("click", () => showList(!showingArchived));
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    const query = $("search").value.trim();
    if (!query) {
      $("results").hidden = true;
      return;
    }
    searchTimer = setTimeout(() => ctx.sendFrame({ type: "search", query }), 250);
  });
  const notify = $("notify");
  if (!("Notification" in window) || Notification.permission !== "default") notify.hidden = true;
  notify.addEventListener("click", async () => {
    await Notification.requestPermission();
    notify.hidden = Notification.permission !== "default";
  });
  document.addEventListener("ganglion:frame", (event) => {
    const frame = event.detail;
    if (frame.type === "threads") renderThreads(frame);
    else if (frame.type === "thread_changed") refreshThreads();
    else renderResults(frame);
  });
}
