// Replies in the web chat. A finished reply comes rendered by the server (markdown-it-py,
// the same rules as the Matrix interface's HTML, code highlighted by Pygments) and is run
// through DOMPurify (vendored, see vendor/dompurify/README.md) before it enters the page,
// as an inert DOM fragment. While a reply streams, a small preview renderer below shows it:
// it only ever uses textContent and createElement, and links only http(s) URLs.

import DOMPurify from "./vendor/dompurify/purify.es.js";

export function el(tag, className, text) {
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

export function copyButton(text, label = "Copy") {
  const copy = el("button", "copy", label);
  copy.type = "button";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => (copy.textContent = label), 1500);
  });
  return copy;
}

// A code block with its language shown and a copy button.
function decorate(pre) {
  const code = pre.querySelector("code");
  const language = /(?:^|\s)language-([\w+#.-]+)/.exec(code?.className || "")?.[1];
  const box = el("div", "codeblock");
  const bar = el("div", "codebar");
  bar.append(el("span", "language", language || "text"), copyButton(pre.textContent));
  pre.replaceWith(box);
  box.append(bar, pre);
  return box;
}

function codeBlock(code) {
  const pre = el("pre");
  pre.append(el("code", "", code));
  const holder = document.createDocumentFragment();
  holder.append(pre);
  return decorate(pre);
}

const SANITISE = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["style", "img", "form", "input", "button", "textarea", "select"],
  FORBID_ATTR: ["style", "id", "name"],
};

// The server's rendering of a reply, sanitised, as nodes (never an HTML string).
export function renderHtml(html) {
  const fragment = DOMPurify.sanitize(html, SANITISE);
  for (const link of fragment.querySelectorAll("a")) {
    link.rel = "noopener noreferrer";
    link.target = "_blank";
  }
  for (const pre of fragment.querySelectorAll("pre")) decorate(pre);
  return fragment;
}

export function renderMarkdown(text) {
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
