// Files in the web chat: attach (button, drag and drop, paste), a chip per file before
// it is sent, uploads with a progress bar, a microphone that records a voice message,
// and attachments shown in the transcript.
//
// Uploads go over HTTP (POST /api/files/<thread>, the protocol in ganglion/web/frames.py)
// with the token in an Authorization header: there is no cookie, so nothing the page
// shows can be fetched without it. Pictures are therefore fetched with the header and
// shown from blob: URLs (the CSP allows blob: images and nothing else new); only PNG,
// JPEG, GIF and WebP are shown inline, every other file is a download.

import { el } from "./markdown.js";

const INLINE = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

export function describeSize(size) {
  if (size < 1024) return `${size} bytes`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / (1024 * 1024)).toFixed(1)} MB`;
}

// One upload with progress: resolves with the server's attachment, rejects with its
// reason (the server's message when it gave one).
function upload(thread, token, file, { voice = false, onProgress }) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const name = encodeURIComponent(file.name || (voice ? "voice.webm" : "file"));
    request.open("POST", `/api/files/${thread}?name=${name}${voice ? "&voice=1" : ""}`);
    request.setRequestHeader("Authorization", `Bearer ${token()}`);
    request.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      let answer = null;
      try {
        answer = JSON.parse(request.responseText);
      } catch {
        answer = null;
      }
      if (request.status === 201 && answer) resolve(answer);
      else reject(new Error(answer?.error || `upload failed (HTTP ${request.status})`));
    });
    request.addEventListener("error", () => reject(new Error("the upload was cut off")));
    request.send(file);
  });
}

// What the page shows of an attachment: a picture (fetched with the token), or a
// download button.
export function attachmentNode(item, token) {
  if (INLINE.has(item.mimetype) && item.kind === "image") {
    const figure = el("figure", "attachment image");
    const image = el("img");
    image.alt = item.name;
    figure.append(image, el("figcaption", "", item.name));
    fetchBlob(item.url, token)
      .then((blob) => {
        image.src = URL.createObjectURL(blob);
      })
      .catch(() => figure.classList.add("missing"));
    figure.addEventListener("click", () => download(item, token));
    return figure;
  }
  const button = el("button", "attachment file link", `${item.kind === "voice" ? "Voice message: " : ""}${item.name} (${describeSize(item.size)})`);
  button.type = "button";
  button.title = "Download";
  button.addEventListener("click", () => download(item, token));
  return button;
}

export function attachmentsNode(items, token) {
  const box = el("div", "attachments");
  for (const item of items) box.append(attachmentNode(item, token));
  return box;
}

async function fetchBlob(url, token) {
  const answer = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
  return answer.blob();
}

async function download(item, token) {
  const link = el("a");
  link.href = URL.createObjectURL(await fetchBlob(item.url, token));
  link.download = item.name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// The composer's side: the files waiting to be sent, as chips.
export function initAttach({ thread, token, input, onVoice, onChange, showBanner }) {
  const chips = document.getElementById("chips");
  const picker = document.getElementById("file-picker");
  const microphone = document.getElementById("microphone");
  const waiting = []; // {file, node, bar, voice}

  function add(file, voice = false) {
    const node = el("div", "attach-chip");
    if (INLINE.has(file.type)) {
      const thumb = el("img");
      thumb.src = URL.createObjectURL(file);
      thumb.alt = "";
      node.append(thumb);
    }
    node.append(el("span", "name", `${file.name || "voice.webm"} (${describeSize(file.size)})`));
    const bar = el("progress");
    bar.max = 1;
    bar.value = 0;
    bar.hidden = true;
    node.append(bar);
    const remove = el("button", "icon", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    const entry = { file, node, bar, voice };
    remove.addEventListener("click", () => {
      waiting.splice(waiting.indexOf(entry), 1);
      node.remove();
      chips.hidden = waiting.length === 0;
      onChange();
    });
    node.append(remove);
    chips.append(node);
    waiting.push(entry);
    chips.hidden = false;
    onChange();
    return entry;
  }

  function addAll(files) {
    for (const file of files) add(file);
    input.focus();
  }

  // Uploads every waiting file; resolves with the send frame's attachment refs. On a
  // failure the chips stay (with the reason), so the owner can remove one and retry.
  async function uploadAll(entries = waiting) {
    const refs = [];
    for (const entry of [...entries]) {
      entry.bar.hidden = false;
      entry.node.classList.remove("failed");
      try {
        const onProgress = (part) => {
          entry.bar.value = part;
          // Told to the page too (a screen reader's live region, the tests).
          document.dispatchEvent(new CustomEvent("ganglion:upload", { detail: { name: entry.file.name, part } }));
        };
        const item = entry.item ?? (await upload(thread, token, entry.file, { voice: entry.voice, onProgress }));
        entry.item = item;
        entry.bar.value = 1;
        refs.push({ ref: { path: item.path, mimetype: item.mimetype, ...(entry.voice ? { voice: true } : {}) }, item });
      } catch (error) {
        entry.node.classList.add("failed");
        entry.node.title = error.message;
        throw error;
      }
    }
    return refs;
  }

  function clear() {
    for (const entry of waiting.splice(0)) entry.node.remove();
    chips.hidden = true;
    onChange();
  }

  $("attach").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    addAll(picker.files);
    picker.value = "";
  });
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length) {
      event.preventDefault();
      addAll(files);
    }
  });
  const chat = document.getElementById("chat");
  chat.addEventListener("dragover", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    chat.classList.add("dropping");
  });
  chat.addEventListener("dragleave", (event) => {
    if (event.target === chat || !chat.contains(event.relatedTarget)) chat.classList.remove("dropping");
  });
  chat.addEventListener("drop", (event) => {
    chat.classList.remove("dropping");
    const files = [...(event.dataTransfer?.files ?? [])];
    if (!files.length) return;
    event.preventDefault();
    addAll(files);
  });

  // The microphone: press to record, press again to send the voice message.
  let recorder = null;
  microphone.hidden = !navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === "undefined";
  microphone.addEventListener("click", async () => {
    if (recorder) {
      recorder.stop();
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      showBanner(`The microphone is not available: ${error.message}`);
      return;
    }
    const pieces = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (event) => event.data.size && pieces.push(event.data));
    recorder.addEventListener("stop", () => {
      for (const track of stream.getTracks()) track.stop();
      const type = (recorder.mimeType || "audio/webm").split(";")[0];
      recorder = null;
      microphone.textContent = "Voice";
      microphone.classList.remove("recording");
      microphone.setAttribute("aria-pressed", "false");
      const name = type.includes("ogg") ? "voice.ogg" : "voice.webm";
      onVoice(add(new File(pieces, name, { type }), true));
    });
    recorder.start();
    microphone.textContent = "Send voice";
    microphone.classList.add("recording");
    microphone.setAttribute("aria-pressed", "true");
  });

  function $(id) {
    return document.getElementById(id);
  }

  return {
    waiting: () => waiting.length,
    uploadAll,
    clear,
    take(entry) {
      waiting.splice(waiting.indexOf(entry), 1);
      entry.node.remove();
      chips.hidden = waiting.length === 0;
      onChange();
    },
  };
}
