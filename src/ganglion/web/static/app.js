// Ganglion web chat. No build step; its few libraries are vendored (static/vendor). Model
// text is only ever put into the page through textContent and createElement, or as a
// sanitised DOM fragment (markdown.js, never innerHTML), so nothing in a reply can run as
// script; the server's CSP forbids inline script as a second line of defence. The
// websocket protocol is documented in ganglion/web/frames.py.

import { initApprovals } from "./approvals.js";
import { attachmentsNode, initAttach } from "./attach.js";
import { copyButton, el, renderMarkdown } from "./markdown.js";
import { initRewind } from "./rewind.js";
import { initUsage } from "./usage.js";
import { initKeys } from "./keys.js";
import { initSidebar, refreshThreads, showList } from "./sidebar.js";

const $ = (id) => document.getElementById(id);
const transcript = $("transcript");
const older = $("older");
const input = $("input");
const sendButton = $("send");
const statusBadge = $("status");
const retryNow = $("retry-now");
const activity = $("activity");
const banner = $("banner");
const announcer = $("announcer");
const jump = $("jump");
const welcome = $("welcome");
const commandMenu = $("commands");

const signin = $("signin");
const tokenInput = $("token-input");

const THREAD = /^web_[0-9a-f]{8,64}$/;
const CLOSE_UNAUTHORISED = 4001;
const COMMANDS = [
  ["/help", "what the commands do"],
  ["/new", "start a new conversation (this one is kept under Archived)"],
  ["/compact", "summarise the older part of the conversation"],
  ["/reminders", "list the reminders"],
  ["/confirm", "allow a recurring reminder the assistant set"],
  ["/heartbeat", "review the open goals now"],
  ["/tools", "list the tools the assistant may use"],
  ["/usage", "what this conversation and today cost"],
  ["/budget", "what today's budgets have left (/budget +N allows more)"],
  ["/model", "list the models, or switch this conversation to one"],
];

export function randomHex(bytes) {
  const data = new Uint8Array(bytes);
  crypto.getRandomValues(data);
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The access token. The link `ganglion run` prints carries it in the fragment
// (#token=…), which the browser never sends to any server; it is kept in this origin's
// localStorage (which, unlike a cookie, no page on another port can read) and sent as
// the socket's first frame. It is taken out of the address at once.
const TOKEN_KEY = "ganglion.token";
function takeTokenFromAddress() {
  const offered = new URLSearchParams(location.hash.slice(1)).get("token");
  if (offered) localStorage.setItem(TOKEN_KEY, offered);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
}
takeTokenFromAddress();
const token = () => localStorage.getItem(TOKEN_KEY);

function askForToken(why) {
  setStatus("refused", "not signed in");
  if (why) showBanner(why, true);
  signin.hidden = false;
  tokenInput.focus();
}

signin.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) return;
  localStorage.setItem(TOKEN_KEY, token);
  tokenInput.value = "";
  signin.hidden = true;
  banner.hidden = true;
  delay = 500;
  connect();
});

// The conversation: the one in the address (/c/<thread_id>), else the tab's, else a new
// one; the address then names it, so a reload, a bookmark or another device opens it.
function chooseThread() {
  const match = /^\/c\/([^/]+)$/.exec(location.pathname);
  if (match && THREAD.test(match[1])) return match[1];
  const kept = sessionStorage.getItem("ganglion.thread");
  return kept && THREAD.test(kept) ? kept : "web_" + randomHex(8);
}
const thread = chooseThread();
sessionStorage.setItem("ganglion.thread", thread);
if (location.pathname !== `/c/${thread}`) history.replaceState(null, "", `/c/${thread}`);
window.ganglionThread = thread;

// ---- outgoing messages: pending -> accepted -> answered, or failed ----------------------

// Sends not yet accepted survive a reload (sessionStorage) and are sent again with the
// same id: the server never takes one twice, and answers each once.
const OUTBOX_KEY = `ganglion.outbox.${thread}`;
const outgoing = new Map(); // client id -> {id, text, uploaded, node, state, turnId}
const byTurn = new Map(); // turn id -> outgoing entry
let maxBytes = 64 * 1024;

function saveOutbox() {
  const waiting = [...outgoing.values()].filter((m) => m.state === "pending");
  sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(waiting.map(({ id, text, uploaded }) => ({ id, text, uploaded }))));
}

// `uploaded`: the message's files, uploaded already ({ref, item} each).
function frameFor(entry) {
  const frame = { v: 1, type: "send", id: entry.id, text: entry.text };
  if (entry.uploaded?.length) frame.attachments = entry.uploaded.map((u) => u.ref);
  return JSON.stringify(frame);
}

function setState(entry, state, reason) {
  entry.state = state;
  const node = entry.node;
  node.dataset.state = state;
  const label = node.querySelector(".state");
  label.replaceChildren();
  if (state === "pending") label.textContent = "Sending…";
  else if (state === "queued") label.textContent = "Waiting for its turn";
  else if (state === "accepted") label.textContent = "Sent";
  else if (state === "failed") {
    label.append(el("span", "reason", `Not sent: ${reason}`));
    // Sent again as it is, a message too long for the server fails again: only Edit helps.
    const retry = el("button", "link", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => resend(entry));
    if (entry.tooLong) retry.hidden = true;
    const edit = el("button", "link", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      input.value = entry.text;
      autosize();
      input.focus();
      forget(entry);
    });
    label.append(" ", retry, " ", edit);
  }
  saveOutbox();
}

function forget(entry) {
  outgoing.delete(entry.id);
  entry.node.remove();
  saveOutbox();
  updateWelcome();
}

function userBubble(text, kind, attachments) {
  const node = el("div", "msg user" + (kind === "command" ? " command" : ""));
  node.append(el("span", "sr-only", "You said: "));
  if (attachments?.length) node.append(attachmentsNode(attachments, token));
  node.append(el("div", "text", text || ""));
  if (isLong(text || "")) collapse(node);
  node.append(el("div", "state"));
  node.querySelector(".text").dir = "auto";
  return node;
}

// A long message (a pasted log, a document) is shown folded, with a control to unfold it.
const LONG_CHARS = 1200;
const LONG_LINES = 12;
function isLong(text) {
  return text.length > LONG_CHARS || text.split("\n").length > LONG_LINES;
}

function collapse(node) {
  const toggle = el("button", "link fold", "Show more");
  toggle.type = "button";
  toggle.setAttribute("aria-expanded", "false");
  node.classList.add("collapsed");
  toggle.addEventListener("click", () => {
    const open = node.classList.toggle("collapsed") === false;
    toggle.textContent = open ? "Show less" : "Show more";
    toggle.setAttribute("aria-expanded", String(open));
  });
  node.append(toggle);
}

// A file the assistant sent (`send_file`).
function fileBubble(attachments, turnId) {
  const node = el("div", "msg assistant file");
  if (turnId) node.dataset.turn = turnId;
  node.append(el("span", "sr-only", "Ganglion sent a file: "));
  node.append(attachmentsNode(attachments, token));
  return node;
}

function bytesOf(text) {
  return new TextEncoder().encode(text).length;
}

function send(text, uploaded = []) {
  const entry = { id: randomHex(8), text, uploaded, state: "pending", turnId: null, node: null };
  const command = !uploaded.length && text.trim().startsWith("/") && !text.trim().startsWith("//");
  entry.node = append(userBubble(text, command ? "command" : null, uploaded.map((u) => u.item)));
  outgoing.set(entry.id, entry);
  const size = bytesOf(frameFor(entry));
  if (size > maxBytes) {
    entry.tooLong = true;
    setState(entry, "failed", `too long (${size.toLocaleString()} bytes; the limit is ${maxBytes.toLocaleString()})`);
    return;
  }
  setState(entry, "pending");
  transcript.scrollTop = transcript.scrollHeight;
  if (synced) socket.send(frameFor(entry));
  rewinds.update();
}

function resend(entry) {
  entry.node.remove();
  outgoing.delete(entry.id);
  saveOutbox();
  send(entry.text, entry.uploaded);
}

function onAccepted(frame) {
  const entry = outgoing.get(frame.id);
  if (!entry) return;
  entry.turnId = frame.turn_id;
  if (frame.turn_id) {
    byTurn.set(frame.turn_id, entry);
    entry.node.dataset.turn = frame.turn_id;
  }
  // A command has no turn: its output follows at once, as a notice.
  const answered = frame.state === "done" || frame.state === "failed" || !frame.turn_id;
  setState(entry, answered ? "answered" : frame.state === "queued" && frame.duplicate ? "queued" : "accepted");
  if (answered) outgoing.delete(entry.id);
}

function answered(turnId) {
  const entry = byTurn.get(turnId);
  if (!entry) return;
  byTurn.delete(turnId);
  outgoing.delete(entry.id);
  setState(entry, "answered");
}

// ---- transcript -----------------------------------------------------------------------

const streaming = new Map(); // turn_id -> {node, text, shown, frame}
const turns = new Map(); // turn_id -> {source, label} of turns started live
const shownReplies = new Set(JSON.parse(sessionStorage.getItem("ganglion.shown") || "[]"));
let oldestId = null;
let moreHistory = false;
let loadingOlder = false;

function atBottom() {
  return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
}

function append(node) {
  const stick = atBottom();
  transcript.append(node);
  if (stick) transcript.scrollTop = transcript.scrollHeight;
  else jump.hidden = false;
  updateWelcome();
  return node;
}

function updateWelcome() {
  welcome.hidden = gone || transcript.querySelector(".msg:not(.flash), .tool, .chip") !== null;
}

// The conversation is gone (deleted in this tab, in another, or before this page opened
// it): nothing more is said into it, and the page says why.
let gone = false;
function setArchived(archived) {
  $("archived-tag").hidden = !archived;
}

function conversationGone(why) {
  gone = true;
  showBanner(why, true);
  for (const control of [input, sendButton, $("attach"), $("microphone")]) control.disabled = true;
  input.placeholder = "This conversation was deleted";
  setActivity("");
  updateWelcome();
}

// A note the page before this one left for it (where `/new` put the old conversation),
// shown once above the new conversation.
const FLASH_KEY = "ganglion.flash";
let flash = sessionStorage.getItem(FLASH_KEY);
sessionStorage.removeItem(FLASH_KEY);
function showFlash() {
  if (!flash) return;
  const node = systemBubble("notice", flash);
  node.classList.add("flash");
  older.after(node);
  announce(flash);
  flash = null;
}

// A finished reply's bubble; `streaming`: one whose text is still coming (see `draw`).
function assistantBubble(text, turnId, { streaming = false } = {}) {
  const node = el("div", "msg assistant");
  if (turnId) node.dataset.turn = turnId;
  node.append(el("span", "sr-only", "Ganglion said: "));
  const body = el("div", "text");
  body.dir = "auto";
  body.append(renderMarkdown(text));
  node.append(body);
  if (streaming) {
    node.classList.add("streaming");
    node.setAttribute("aria-busy", "true");
  } else finishReply(node, text);
  return node;
}

function finishReply(node, text) {
  node.classList.remove("streaming");
  node.removeAttribute("aria-busy");
  const actions = el("div", "actions");
  actions.append(copyButton(text, "Copy reply"));
  node.append(actions);
}

// A streaming reply is rendered again from all its text so far, at most once a frame, by
// the renderer of finished replies: tables, quotes and math take shape as they come, and
// the finished reply is the last frame drawn.
function drawSoon(entry) {
  entry.frame ||= requestAnimationFrame(() => draw(entry));
}

function draw(entry, text = entry.text) {
  cancelAnimationFrame(entry.frame);
  entry.frame = 0;
  if (entry.shown === text) return;
  const stick = atBottom();
  entry.node.querySelector(".text").replaceChildren(renderMarkdown(text));
  entry.shown = text;
  if (stick) transcript.scrollTop = transcript.scrollHeight;
}

// Text streamed before a tool call (or a failure) is all there is of its bubble.
function endStream(turnId) {
  const entry = streaming.get(turnId);
  if (!entry) return;
  draw(entry);
  entry.node.classList.remove("streaming");
  entry.node.removeAttribute("aria-busy");
  streaming.delete(turnId);
}

function systemBubble(kind, text) {
  const node = el("div", "msg " + kind);
  node.append(el("span", "sr-only", kind === "error" ? "Failed: " : "Notice: "));
  const body = el("div", "text", text);
  body.dir = "auto";
  node.append(body);
  return node;
}

// A failed turn's bubble offers to answer its message again: in place when it is the
// last turn (a regenerate: the message stays once), else as a new message.
function failedTurn(message, text, turnId) {
  const node = systemBubble("error", message);
  if (turnId) node.dataset.turn = turnId;
  if (text) {
    const retry = el("button", "link", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => {
      retry.remove();
      if (!rewinds.retry(turnId)) send(text);
    });
    node.append(retry);
  }
  return node;
}

function chip(source, label, turnId) {
  const text = source === "reminder" ? `Reminder: ${label || ""}` : "Heartbeat review";
  const node = el("div", "chip " + source, text);
  node.dir = "auto";
  if (turnId) node.dataset.turn = turnId;
  return node;
}

// A tool call: a card whose summary says in words what it did (`card`, from the server:
// "Reminder set for 18:30 today", "Ran ls"), the exact call and its output inside.
function toolBlock(name, args, card) {
  const box = el("details", "tool");
  // a word, not an emoji: machines without an emoji font would show a blank box
  box.append(el("summary", "", `tool: ${name}`));
  if (args) box.append(el("pre", "call", `${name} ${args}`));
  if (card) toolResult(box, card);
  return box;
}

function toolResult(box, card) {
  const summary = box.querySelector("summary");
  summary.replaceChildren(el("span", "title", card.title));
  summary.dir = "auto";
  if (card.status) {
    box.classList.add(card.status === "failed" ? "failed" : "exited");
    summary.append(" ", el("span", "status", card.status));
  }
  if (card.output) box.append(el("pre", "output", card.output));
}

let runningTurn = null; // the turn the Stop button stops
function setActivity(text, turnId) {
  if (turnId !== undefined) runningTurn = turnId;
  if (!text) runningTurn = null;
  activity.hidden = !text;
  $("activity-text").textContent = text || "";
  $("stop").hidden = !runningTurn;
}
$("stop").addEventListener("click", () => {
  if (runningTurn && sendFrame({ type: "stop", turn_id: runningTurn })) setActivity("stopping…");
});

function showBanner(text, sticky) {
  banner.textContent = text;
  banner.hidden = false;
  clearTimeout(showBanner.timer);
  if (!sticky) showBanner.timer = setTimeout(() => (banner.hidden = true), 6000);
}

function announce(text) {
  announcer.textContent = "";
  setTimeout(() => (announcer.textContent = text.slice(0, 400)), 50);
}

// The nodes of a page of history, oldest first.
function historyNodes(messages) {
  const nodes = [];
  // A tool result answers a call of the assistant message just before it: servers may
  // reuse call ids from one round to the next, so ids are matched within that message only.
  let calls = new Map();
  const asked = new Map(); // turn id -> what the owner wrote
  for (const m of messages) {
    if (m.role === "user" && !m.kind && m.turn_id && (!m.source || m.source === "user")) asked.set(m.turn_id, m.content);
    if (m.kind === "command") nodes.push(userBubble(m.content, "command"));
    else if (m.kind === "notice") nodes.push(systemBubble("notice", m.content));
    else if (m.kind === "failed") nodes.push(failedTurn(m.content, asked.get(m.turn_id), m.turn_id));
    else if (m.role === "user" && m.source && m.source !== "user") nodes.push(chip(m.source, m.label, m.turn_id));
    else if (m.role === "user") {
      const node = userBubble(m.content, undefined, m.attachments);
      if (m.turn_id) node.dataset.turn = m.turn_id;
      node.dataset.state = m.queued ? "queued" : "answered";
      if (m.queued) node.querySelector(".state").textContent = "Waiting for its turn";
      nodes.push(node);
    } else if (m.role === "assistant") {
      if (m.content) nodes.push(assistantBubble(m.content, m.turn_id));
      calls = new Map();
      for (const call of m.tool_calls || []) {
        const box = toolBlock(call.name, call.arguments);
        calls.set(call.id, box);
        nodes.push(box);
      }
    } else if (m.role === "tool" && calls.has(m.tool_call_id)) {
      toolResult(calls.get(m.tool_call_id), m.card);
      calls.delete(m.tool_call_id);
      if (m.attachments?.length) nodes.push(fileBubble(m.attachments, m.turn_id));
    }
  }
  return nodes;
}

function renderHistory(frame) {
  const messages = frame.messages;
  const ids = messages.map((m) => m.id).filter((id) => id > 0);
  if (frame.before_id !== null && frame.before_id !== undefined) {
    // an older page: put it above, keeping what the reader looks at in place
    const fromBottom = transcript.scrollHeight - transcript.scrollTop;
    older.after(...historyNodes(messages));
    transcript.scrollTop = transcript.scrollHeight - fromBottom;
    loadingOlder = false;
  } else {
    rewinds.reset();
    transcript.replaceChildren(older, ...historyNodes(messages));
    streaming.clear();
    setActivity(""); // a turn still running is shown again right after the history
    // Sends not yet accepted: those the history holds already are only waiting for
    // their `accepted`; the others are shown again, pending.
    const inHistory = new Set(messages.map((m) => m.turn_id).filter(Boolean));
    for (const entry of outgoing.values()) {
      const waiting = entry.state === "pending" && !inHistory.has(`${thread}/${entry.id}`);
      if (waiting || entry.state === "failed") transcript.append(entry.node);
    }
    transcript.scrollTop = transcript.scrollHeight;
    jump.hidden = true;
  }
  if (ids.length) oldestId = Math.min(oldestId ?? Infinity, ...ids);
  moreHistory = frame.more;
  older.hidden = !moreHistory;
  updateWelcome();
  maybeLoadOlder();
}

function maybeLoadOlder() {
  if (!moreHistory || loadingOlder || !synced || oldestId === null) return;
  if (transcript.scrollTop > 200) return;
  loadingOlder = true;
  socket.send(JSON.stringify({ v: 1, type: "history", before_id: oldestId }));
}

function rememberReply(outboxId) {
  if (outboxId === null || outboxId === undefined) return true;
  if (shownReplies.has(outboxId)) return false;
  shownReplies.add(outboxId);
  sessionStorage.setItem("ganglion.shown", JSON.stringify([...shownReplies].slice(-200)));
  return true;
}

// ---- a tab in the background ----------------------------------------------------------

let unread = 0;
function noteInBackground(what, text) {
  if (!document.hidden) return;
  unread += 1;
  document.title = `(${unread}) ${baseTitle}`;
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(what, { body: text.slice(0, 180), tag: thread });
  }
}
let baseTitle = "Ganglion";
export function setTitle(title) {
  baseTitle = title ? `${title} · Ganglion` : "Ganglion";
  $("title").textContent = title || "Ganglion";
  document.title = unread ? `(${unread}) ${baseTitle}` : baseTitle;
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && unread) {
    unread = 0;
    document.title = baseTitle;
  }
});

// ---- frames ---------------------------------------------------------------------------

let leaving = false; // this page is on its way to another conversation
function onFrame(frame) {
  if (leaving) return;
  handleFrame(frame);
  if (frame.type !== "delta") rewinds.update();
}

function handleFrame(frame) {
  switch (frame.type) {
    case "welcome":
      maxBytes = frame.max_message_bytes || maxBytes;
      if (frame.title) setTitle(frame.title);
      // An archived conversation opened by its address: the archived list shows it marked.
      setArchived(Boolean(frame.archived));
      if (frame.archived) showList(true);
      $("limit").textContent = `Messages are limited to ${maxBytes.toLocaleString()} bytes.`;
      break;
    case "history":
      renderHistory(frame);
      if (frame.before_id === null || frame.before_id === undefined) {
        showFlash();
        synced = true;
        // Messages typed while disconnected go out now, after the history they follow.
        for (const entry of outgoing.values()) if (entry.state === "pending") socket.send(frameFor(entry));
      }
      break;
    case "accepted": {
      const rewound = rewinds.accepted(frame);
      if (rewound) outgoing.set(rewound.id, rewound);
      onAccepted(frame);
      break;
    }
    case "turn_started": {
      turns.set(frame.turn_id, { source: frame.source, label: frame.label });
      // A turn already running when the page joined it: its chip is in the history.
      const shown = transcript.querySelector(`.chip[data-turn="${CSS.escape(frame.turn_id)}"]`);
      if (frame.source === "reminder" && !shown) {
        append(chip("reminder", frame.label, frame.turn_id));
        noteInBackground("Reminder", frame.label || "");
      }
      if (frame.source !== "heartbeat") setActivity("thinking…", frame.turn_id);
      break;
    }
    case "delta": {
      if (turns.get(frame.turn_id)?.source === "heartbeat") break; // shown only if it says something
      let entry = streaming.get(frame.turn_id);
      if (!entry) {
        const node = append(assistantBubble("", frame.turn_id, { streaming: true }));
        entry = { node, text: "", shown: "", frame: 0 };
        streaming.set(frame.turn_id, entry);
        if ($("activity-text").textContent === "thinking…") setActivity("writing…");
      }
      entry.text += frame.text;
      drawSoon(entry);
      break;
    }
    case "tool":
      if (frame.phase === "start") setActivity(`running tool ${frame.tool}…`);
      else {
        endStream(frame.turn_id); // text streamed before the call has a bubble of its own
        append(toolBlock(frame.tool, frame.arguments, frame.card));
        setActivity("thinking…");
      }
      break;
    case "file":
      if (rememberReply(frame.outbox_id)) append(fileBubble([frame.attachment], frame.turn_id));
      break;
    case "reply": {
      setActivity("");
      answered(frame.turn_id);
      usage.refresh();
      const entry = streaming.get(frame.turn_id);
      streaming.delete(frame.turn_id);
      if (!rememberReply(frame.outbox_id)) break;
      if (turns.get(frame.turn_id)?.source === "heartbeat") append(chip("heartbeat", null, frame.turn_id));
      if (entry) {
        draw(entry, frame.text);
        finishReply(entry.node, frame.text);
      } else append(assistantBubble(frame.text, frame.turn_id));
      announce(`Ganglion said: ${frame.text}`);
      noteInBackground("Ganglion", frame.text);
      refreshThreads();
      break;
    }
    case "failed": {
      setActivity("");
      const asked = byTurn.get(frame.turn_id)?.text;
      answered(frame.turn_id);
      endStream(frame.turn_id);
      append(failedTurn(frame.message, asked, frame.turn_id));
      announce(`Failed: ${frame.message}`);
      break;
    }
    case "notice":
      append(systemBubble("notice", frame.text));
      announce(frame.text);
      if (frame.turn_id && frame.turn_id === runningTurn && $("activity-text").textContent === "stopping…") {
        answered(frame.turn_id);
        setActivity("");
      }
      break;
    case "approval":
      approvals.ask(frame);
      break;
    case "usage":
      if (frame.thread_id === thread) usage.show(frame);
      break;
    case "approval_settled":
      approvals.settled(frame);
      break;
    case "new_conversation":
      // `/new`: the old conversation is archived; the new one has an address of its own.
      leaving = true;
      sessionStorage.setItem("ganglion.thread", frame.thread_id);
      sessionStorage.setItem(FLASH_KEY, frame.text);
      location.assign(`/c/${frame.thread_id}`);
      break;
    case "versions":
      rewinds.known(frame);
      break;
    case "thread_changed":
      // Another version of the last answer is shown: this conversation is read again.
      if (frame.thread_id === thread && frame.change === "version") sendFrame({ type: "hello", thread_id: thread });
      if (frame.thread_id === thread && frame.change === "deleted") {
        conversationGone("This conversation was deleted in another tab. Start a new chat from the list.");
      } else if (frame.thread_id === thread && ["archived", "unarchived", "active"].includes(frame.change)) {
        setArchived(frame.change === "archived");
      }
    // falls through: the list shows the change
    case "threads":
    case "search_results":
      document.dispatchEvent(new CustomEvent("ganglion:frame", { detail: frame }));
      break;
    case "error": {
      const entry = frame.id ? outgoing.get(frame.id) : null;
      if (rewinds.refused(frame)) break;
      if (frame.code === "not_open") approvals.refused();
      if (entry) {
        entry.tooLong = frame.code === "too_large";
        setState(entry, "failed", frame.message);
      } else if (frame.code === "deleted") conversationGone("This conversation was deleted. Start a new chat from the list.");
      else showBanner(frame.message);
      break;
    }
  }
}

// ---- connection ---------------------------------------------------------------------

let socket = null;
let synced = false; // the history of this connection has arrived
let delay = 500;
let retryTimer = null;
const MAX_DELAY = 4000;

function setStatus(state, text) {
  statusBadge.className = `status ${state}`;
  statusBadge.textContent = text;
  retryNow.hidden = state !== "disconnected";
}

export function sendFrame(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ v: 1, ...frame }));
    return true;
  }
  return false;
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (socket && socket.readyState <= WebSocket.OPEN) return;
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    askForToken();
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  setStatus("connecting", "connecting…");
  const current = new WebSocket(`${scheme}://${location.host}/ws`);
  socket = current;
  current.addEventListener("open", () => {
    delay = 500;
    setStatus("connected", "connected");
    current.send(JSON.stringify({ v: 1, type: "auth", token }));
    current.send(JSON.stringify({ v: 1, type: "hello", thread_id: thread }));
    refreshThreads();
  });
  current.addEventListener("message", (event) => {
    try {
      onFrame(JSON.parse(event.data));
    } catch (error) {
      console.error("bad frame", error);
    }
  });
  current.addEventListener("close", (event) => {
    if (socket !== current) return;
    synced = false;
    loadingOlder = false;
    if (event.code === CLOSE_UNAUTHORISED) {
      localStorage.removeItem(TOKEN_KEY);
      askForToken("The access token this browser kept is no longer valid: open the link “ganglion run” printed, or paste the token.");
      return;
    }
    if (event.code === 1008) showBanner(event.reason || "connection refused");
    setStatus("disconnected", "Disconnected");
    rewinds.update();
    retryTimer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, MAX_DELAY);
  });
}

function retrySoon() {
  if (socket && socket.readyState <= WebSocket.OPEN) return;
  if (statusBadge.classList.contains("refused")) return;
  delay = 500;
  connect();
}
retryNow.addEventListener("click", retrySoon);
window.addEventListener("focus", retrySoon);
window.addEventListener("online", retrySoon);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) retrySoon();
});

// ---- composer -----------------------------------------------------------------------

let attach = null; // the files waiting to be sent (attach.js), set up below

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, 192)}px`;
  sendButton.disabled = gone || (!input.value.trim() && !attach?.waiting());
  showCommands();
}

let commandChoice = 0;
function matchingCommands() {
  const text = input.value;
  if (!text.startsWith("/") || /\s/.test(text)) return [];
  return COMMANDS.filter(([name]) => name.startsWith(text.toLowerCase()));
}

function showCommands() {
  const matches = matchingCommands();
  commandMenu.hidden = !matches.length;
  input.setAttribute("aria-expanded", String(matches.length > 0));
  commandChoice = Math.min(commandChoice, Math.max(0, matches.length - 1));
  commandMenu.replaceChildren(
    ...matches.map(([name, help], i) => {
      const item = el("li", i === commandChoice ? "chosen" : "");
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(i === commandChoice));
      item.append(el("strong", "", name), " ", el("span", "", help));
      item.addEventListener("mousedown", (event) => {
        event.preventDefault();
        pickCommand(name);
      });
      return item;
    }),
  );
}

function pickCommand(name) {
  input.value = name + " ";
  commandChoice = 0;
  autosize();
  input.focus();
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim() && !attach.waiting()) return;
  if (!attach.waiting()) {
    input.value = "";
    autosize();
    send(text);
    return;
  }
  sendButton.disabled = true;
  let uploaded;
  try {
    uploaded = await attach.uploadAll();
  } catch (error) {
    showBanner(`Not sent: ${error.message}`);
    autosize();
    return;
  }
  attach.clear();
  input.value = "";
  autosize();
  send(text, uploaded);
});

// A voice recording goes out as soon as it is made, as Element sends one.
async function sendVoice(entry) {
  try {
    const uploaded = await attach.uploadAll([entry]);
    attach.take(entry);
    send("", uploaded);
  } catch (error) {
    showBanner(`The voice message was not sent: ${error.message}`);
  }
}
input.addEventListener("keydown", (event) => {
  const matches = matchingCommands();
  if (matches.length && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
    event.preventDefault();
    commandChoice = (commandChoice + (event.key === "ArrowDown" ? 1 : -1) + matches.length) % matches.length;
    showCommands();
    return;
  }
  if (matches.length && event.key === "Tab") {
    event.preventDefault();
    pickCommand(matches[commandChoice][0]);
    return;
  }
  if (event.key === "Escape" && !commandMenu.hidden) {
    event.preventDefault(); // closes the list; a second Esc stops a running answer
    commandMenu.hidden = true;
    return;
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    if (matches.length && input.value !== matches[commandChoice][0]) pickCommand(matches[commandChoice][0]);
    else $("composer").requestSubmit();
  }
});
input.addEventListener("input", autosize);

transcript.addEventListener("scroll", () => {
  if (atBottom()) jump.hidden = true;
  maybeLoadOlder();
});
jump.addEventListener("click", () => {
  transcript.scrollTop = transcript.scrollHeight;
  jump.hidden = true;
});

// ---- regenerate and edit ------------------------------------------------------------------

// Something is under way: the controls that take back a turn wait until it is done.
function busy() {
  if (!synced || runningTurn) return true;
  return transcript.querySelector('.msg.user:is([data-state="pending"], [data-state="accepted"], [data-state="queued"])') !== null;
}
attach = initAttach({ thread, token, input, onVoice: sendVoice, onChange: autosize, showBanner });
const rewinds = initRewind({ transcript, busy, sendFrame, randomHex, userBubble, showBanner });
const usage = initUsage({ button: $("usage-button"), panel: $("usage-panel"), sendFrame });
const approvals = initApprovals({ append, sendFrame, announce, noteInBackground, setActivity, thread });

// ---- start ----------------------------------------------------------------------------

for (const { id, text, uploaded = [] } of JSON.parse(sessionStorage.getItem(OUTBOX_KEY) || "[]")) {
  const entry = { id, text, uploaded, state: "pending", turnId: null, node: userBubble(text, null, uploaded.map((u) => u.item)) };
  outgoing.set(id, entry);
  setState(entry, "pending");
}
initSidebar({ thread, sendFrame, setTitle, randomHex });
initKeys({ input, stop: () => $("stop").click(), isRunning: () => Boolean(runningTurn) });
connect();
autosize();
updateWelcome();
input.focus();
