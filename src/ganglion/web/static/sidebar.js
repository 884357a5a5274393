// The list of conversations: a sidebar on wide screens, a drawer on phones. Newest first,
// with New chat, rename, archive, delete and a search over every conversation's text.

import { el } from "./markdown.js";

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

function openDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  $("scrim").hidden = !open;
  $("open-drawer").setAttribute("aria-expanded", String(open));
  if (open) $("search").focus();
}

function button(text, label, onClick) {
  const node = el("button", "icon small", text);
  node.type = "button";
  node.setAttribute("aria-label", label);
  node.title = label;
  node.addEventListener("click", onClick);
  return node;
}

function renderThreads(frame) {
  const list = $("threads");
  list.replaceChildren();
  if (!frame.items.length) {
    list.append(el("li", "empty", frame.archived ? "No archived conversations." : "No conversations yet."));
  }
  for (const item of frame.items) {
    const li = el("li", "thread");
    const link = el("a", "", item.title);
    link.href = `/c/${item.thread_id}`;
    link.dir = "auto";
    if (item.thread_id === ctx.thread) {
      link.setAttribute("aria-current", "page");
      ctx.setTitle(item.title);
    }
    const actions = el("span", "actions");
    actions.append(
      button("Rename", `Rename “${item.title}”`, () => {
        const title = prompt("Rename the conversation", item.title);
        if (title !== null) ctx.sendFrame({ type: "rename", thread_id: item.thread_id, title });
      }),
      button(
        frame.archived ? "Unarchive" : "Archive",
        `${frame.archived ? "Unarchive" : "Archive"} “${item.title}”`,
        () => ctx.sendFrame({ type: "archive", thread_id: item.thread_id, archived: !frame.archived }),
      ),
      button("Delete", `Delete “${item.title}”`, () => {
        if (!confirm(`Delete “${item.title}” for good?`)) return;
        ctx.sendFrame({ type: "delete", thread_id: item.thread_id });
        if (item.thread_id === ctx.thread) location.href = newChatHref();
      }),
    );
    li.append(link, actions);
    list.append(li);
  }
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

export function initSidebar(context) {
  ctx = context;
  $("new-chat").href = newChatHref();
  $("open-drawer").addEventListener("click", () => openDrawer(!document.body.classList.contains("drawer-open")));
  $("close-drawer").addEventListener("click", () => openDrawer(false));
  $("scrim").addEventListener("click", () => openDrawer(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) openDrawer(false);
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
