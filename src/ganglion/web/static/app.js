// Ganglion web chat. No build step, no dependencies. Model text is only ever put into the
// page through textContent and createElement (never innerHTML), so nothing in a reply can
// run as script; the server's CSP forbids inline script as a second line of defence.

const $ = (id) => document.getElementById(id);
const transcript = $("transcript");
const input = $("input");
const sendButton = $("send");
const statusBadge = $("status");
const activity = $("activity");
const banner = $("banner");

function randomHex(bytes) {
  const data = new Uint8Array(bytes);
  crypto.getRandomValues(data);
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

let thread = sessionStorage.getItem("ganglion.thread");
if (!thread || !/^web_[0-9a-f]{8,64}$/.test(thread)) {
  thread = "web_" + randomHex(8);
  sessionStorage.setItem("ganglion.thread", thread);
}
window.ganglionThread = thread;

// ---- safe Markdown --------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function inline(parent, text) {
  // `code`, **bold**, *italic*, [text](http…)
  const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\((https?:\/\/[^\s)]+)\))/;
  let rest = text;
  while (rest) {
    const match = pattern.exec(rest);
    if (!match) {
      parent.append(document.createTextNode(rest));
      break;
    }
    if (match.index) parent.append(document.createTextNode(rest.slice(0, match.index)));
    const token = match[0];
    if (match[1]) parent.append(el("code", "", token.slice(1, -1)));
    else if (match[2]) inline(parent.appendChild(el("strong")), token.slice(2, -2));
    else if (match[3]) inline(parent.appendChild(el("em")), token.slice(1, -1));
    else {
      const link = el("a", "", token.slice(1, token.indexOf("](")));
      link.href = match[5];
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      parent.append(link);
    }
    rest = rest.slice(match.index + token.length);
  }
}

function codeBlock(code) {
  const box = el("div", "codeblock");
  const pre = el("pre");
  pre.append(el("code", "", code));
  const copy = el("button", "", "Copy");
  copy.type = "button";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  });
  box.append(pre, copy);
  return box;
}

function renderMarkdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) {
      const p = el("p");
      paragraph.forEach((line, i) => {
        if (i) p.append(el("br"));
        inline(p, line);
      });
      root.append(p);
      paragraph = [];
    }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*```/.exec(line);
    if (fence) {
      flush();
      list = null;
      const body = [];
      i++;
      while (i < lines.length && !/^\s*```/.test(lines[i])) body.push(lines[i++]);
      root.append(codeBlock(body.join("\n")));
      continue;
    }
    const heading = /^(#{1,3})\s+(.*)$/.exec(line);
    const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      list = null;
      inline(root.appendChild(el("h" + heading[1].length)), heading[2]);
    } else if (bullet || numbered) {
      flush();
      const kind = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== kind) list = root.appendChild(el(kind));
      inline(list.appendChild(el("li")), (bullet || numbered)[1]);
    } else if (!line.trim()) {
      flush();
      list = null;
    } else {
      list = null;
      paragraph.push(line);
    }
  }
  flush();
  return root;
}

// ---- transcript -----------------------------------------------------------------------

const streaming = new Map(); // turn_id -> {node, text}
const shownReplies = new Set(JSON.parse(sessionStorage.getItem("ganglion.shown") || "[]"));

function atBottom() {
  return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
}

function append(node) {
  const stick = atBottom();
  transcript.append(node);
  if (stick) transcript.scrollTop = transcript.scrollHeight;
  return node;
}

function bubble(role, text) {
  const node = el("div", "msg " + role);
  if (role === "assistant") node.append(renderMarkdown(text || ""));
  else node.textContent = text || "";
  return append(node);
}

function toolBlock(name, args, result, ok) {
  const box = el("details", "tool");
  // a word, not an emoji: machines without an emoji font would show a blank box
  box.append(el("summary", "", `tool: ${name}`));
  if (args) box.append(el("pre", "", args));
  if (result !== undefined && result !== null) toolResult(box, result, ok);
  return append(box);
}

function toolResult(box, result, ok) {
  if (ok === false) {
    box.classList.add("failed");
    box.querySelector("summary").append(" (failed)");
  }
  box.append(el("pre", "", result));
}

function setActivity(text) {
  activity.hidden = !text;
  activity.textContent = text || "";
}

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = false;
  clearTimeout(showBanner.timer);
  showBanner.timer = setTimeout(() => (banner.hidden = true), 6000);
}

function renderHistory(messages) {
  transcript.replaceChildren();
  streaming.clear();
  // A tool result answers a call of the assistant message just before it: servers may
  // reuse call ids from one round to the next, so ids are matched within that message only.
  let calls = new Map();
  for (const m of messages) {
    if (m.role === "user") bubble("user", m.content);
    else if (m.role === "assistant") {
      if (m.content) bubble("assistant", m.content);
      calls = new Map();
      for (const call of m.tool_calls || []) calls.set(call.id, toolBlock(call.name, call.arguments));
    } else if (m.role === "tool" && calls.has(m.tool_call_id)) {
      const content = String(m.content ?? "");
      toolResult(calls.get(m.tool_call_id), content, !content.startsWith("error:"));
      calls.delete(m.tool_call_id);
    }
  }
  transcript.scrollTop = transcript.scrollHeight;
}

function rememberReply(outboxId) {
  if (outboxId === null || outboxId === undefined) return true;
  if (shownReplies.has(outboxId)) return false;
  shownReplies.add(outboxId);
  sessionStorage.setItem("ganglion.shown", JSON.stringify([...shownReplies].slice(-200)));
  return true;
}

function onFrame(frame) {
  switch (frame.type) {
    case "welcome":
      break;
    case "history":
      renderHistory(frame.messages);
      synced = true;
      // Messages typed while disconnected go out now, after the history they follow.
      while (unsent.length) {
        const { frame: pending, text } = unsent.shift();
        if (text) bubble("user", text);
        socket.send(pending);
      }
      break;
    case "turn_started":
      setActivity("thinking…");
      break;
    case "delta": {
      let entry = streaming.get(frame.turn_id);
      if (!entry) {
        entry = { node: bubble("assistant", ""), text: "" };
        entry.node.classList.add("streaming");
        streaming.set(frame.turn_id, entry);
      }
      entry.text += frame.text;
      const stick = atBottom();
      entry.node.replaceChildren(renderMarkdown(entry.text));
      if (stick) transcript.scrollTop = transcript.scrollHeight;
      break;
    }
    case "tool":
      if (frame.phase === "start") setActivity(`running tool ${frame.tool}…`);
      else {
        // text streamed before the call belongs to its own bubble
        streaming.delete(frame.turn_id);
        toolBlock(frame.tool, frame.arguments, frame.result, frame.ok);
        setActivity("thinking…");
      }
      break;
    case "reply": {
      setActivity("");
      const entry = streaming.get(frame.turn_id);
      streaming.delete(frame.turn_id);
      if (!rememberReply(frame.outbox_id)) break;
      if (entry) {
        entry.node.classList.remove("streaming");
        entry.node.replaceChildren(renderMarkdown(frame.text));
      } else bubble("assistant", frame.text);
      break;
    }
    case "failed": {
      setActivity("");
      const entry = streaming.get(frame.turn_id);
      if (entry) entry.node.classList.remove("streaming");
      streaming.delete(frame.turn_id);
      bubble("error", frame.message);
      break;
    }
    case "notice":
      if (frame.text.startsWith("Started a new conversation")) transcript.replaceChildren();
      bubble("notice", frame.text);
      break;
    case "error":
      showBanner(frame.message);
      break;
  }
}

// ---- connection ---------------------------------------------------------------------

let socket = null;
let synced = false; // the history of this connection has arrived
let delay = 500;
const unsent = []; // {frame, text} typed while disconnected; sent once the history is back

function setStatus(connected, text) {
  statusBadge.classList.toggle("connected", connected);
  statusBadge.classList.toggle("connecting", !connected);
  statusBadge.textContent = text;
  input.disabled = false;
  sendButton.disabled = false;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.addEventListener("open", () => {
    delay = 500;
    setStatus(true, "connected");
    socket.send(JSON.stringify({ v: 1, type: "hello", thread_id: thread }));
  });
  socket.addEventListener("message", (event) => {
    try {
      onFrame(JSON.parse(event.data));
    } catch (error) {
      console.error("bad frame", error);
    }
  });
  socket.addEventListener("close", (event) => {
    synced = false;
    setStatus(false, "reconnecting…");
    if (event.code === 1008 || event.code === 4401) showBanner(event.reason || "connection refused");
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 10000);
  });
}

function send(text) {
  const frame = JSON.stringify({ v: 1, type: "send", id: randomHex(8), text });
  const shown = !text.trim().startsWith("/") || text.trim().startsWith("//");
  if (synced && socket.readyState === WebSocket.OPEN && !unsent.length) {
    if (shown) bubble("user", text);
    socket.send(frame);
  } else {
    if (shown) bubble("user", text);
    unsent.push({ frame, text: shown ? text : null });
  }
}

function autosize() {
  input.rows = Math.min(8, Math.max(1, input.value.split("\n").length));
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  input.value = "";
  autosize();
  send(text);
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
input.addEventListener("input", autosize);

connect();
input.focus();
