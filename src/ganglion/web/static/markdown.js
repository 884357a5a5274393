// Replies in the web chat, rendered in the page by one renderer, the same while a reply
// streams and once it is done (so a reply never changes its look when it ends):
// markdown-it (vendor/markdown-it) with the rules the server's markdown-it-py keeps for
// Matrix (ganglion.markdown): CommonMark, tables, strikethrough, raw HTML off (HTML in the
// model's text comes out as text), images off (a remote image would leak the reader's
// address), single newlines kept as line breaks, links only for safe schemes (markdown-it
// refuses `javascript:`, `vbscript:`, `file:` and `data:`). Beside them: bare URLs as
// links, `- [ ]` / `- [x]` as disabled checkboxes, table columns aligned, math ($…$, $$…$$,
// \(…\), \[…\]) as KaTeX's MathML, fenced code highlighted by highlight.js. What it makes
// is run through DOMPurify (vendor/dompurify) before it enters the page, as an inert DOM
// fragment: HTML tags, the MathML tags KaTeX writes, no style, no script.

import DOMPurify from "./vendor/dompurify/purify.es.js";
import hljs from "./vendor/highlight.js/highlight.js";
import katex from "./vendor/katex/katex.js";
import MarkdownIt from "./vendor/markdown-it/markdown-it.js";
import { tasklist } from "./vendor/mdit-tasklist/tasklist.js";
import { tex } from "./vendor/mdit-tex/tex.js";

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
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

const MAX_HIGHLIGHTED = 100_000; // characters of one code block; longer ones stay plain

// A fenced block's code as highlighted spans; "" leaves it to markdown-it (escaped).
function highlight(code, language) {
  if (!language || code.length > MAX_HIGHLIGHTED || !hljs.getLanguage(language)) return "";
  return hljs.highlight(code, { language, ignoreIllegals: true }).value;
}

// A streaming reply is rendered again with every frame: its formulas are typeset once.
const typeset = new Map();
const MAX_TYPESET = 500;
function math(source, displayMode) {
  const key = `${displayMode ? "$$" : "$"}${source}`;
  let mathml = typeset.get(key);
  if (mathml === undefined) {
    // An error (a formula still being written, a typo) shows its source, as KaTeX does.
    const options = { displayMode, output: "mathml", throwOnError: false, strict: "ignore", trust: false };
    mathml = katex.renderToString(source, options);
    // A block of its own, which scrolls sideways on a narrow screen rather than overflow.
    if (displayMode) mathml = `<div class="math-block">${mathml}</div>`;
    if (typeset.size >= MAX_TYPESET) typeset.delete(typeset.keys().next().value);
    typeset.set(key, mathml);
  }
  return mathml;
}

// The page's CSP forbids style attributes: a table column's alignment becomes a class.
function alignmentClasses(state) {
  for (const token of state.tokens) {
    const align = /^text-align:(left|center|right)$/.exec(token.attrGet("style") || "");
    if (!align) continue;
    token.attrs = token.attrs.filter(([name]) => name !== "style");
    token.attrJoin("class", `align-${align[1]}`);
  }
}

const markdown = new MarkdownIt("commonmark", { html: false, breaks: true, linkify: true, highlight })
  .enable(["table", "strikethrough", "linkify"])
  .disable("image")
  .use(tasklist, { disabled: true, label: false })
  .use(tex, { delimiters: "all", render: math });
markdown.core.ruler.push("alignment_classes", alignmentClasses);
// Only links with a scheme (https://…, mailto:…): "main.py" names a file, not Paraguay.
markdown.linkify.set({ fuzzyLink: false });

// The MathML KaTeX writes. Its <semantics> wrapper goes (its content stays) and so does
// its <annotation> with the formula's source (content and all): the reply's Markdown is
// what "Copy reply" copies.
const MATHML = [
  "math", "menclose", "mfrac", "mi", "mn", "mo", "mover", "mpadded", "mphantom", "mroot", "mrow",
  "mspace", "msqrt", "mstyle", "msub", "msubsup", "msup", "mtable", "mtd", "mtext", "mtr", "munder",
  "munderover",
];
const MATHML_ATTRIBUTES = [
  "accent", "accentunder", "columnalign", "columnlines", "columnspacing", "depth", "display",
  "displaystyle", "fence", "height", "largeop", "linethickness", "lspace", "mathbackground",
  "mathcolor", "mathsize", "mathvariant", "maxsize", "minsize", "movablelimits", "notation",
  "rowlines", "rowspacing", "rspace", "scriptlevel", "separator", "stretchy", "voffset", "width",
];
const SANITISE = {
  RETURN_DOM_FRAGMENT: true,
  USE_PROFILES: { html: true },
  ADD_TAGS: MATHML,
  ADD_ATTR: MATHML_ATTRIBUTES,
  ADD_FORBID_CONTENTS: ["annotation"],
  FORBID_TAGS: ["style", "img", "form", "button", "textarea", "select"],
  FORBID_ATTR: ["style", "id", "name"],
};
// The one input a reply has is a task's checkbox, which shows and changes nothing.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "INPUT") return;
  node.setAttribute("type", "checkbox");
  node.setAttribute("disabled", "");
});

// `text` (Markdown) as sanitised nodes, never an HTML string.
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(markdown.render(text).trim(), SANITISE);
  for (const link of fragment.querySelectorAll("a")) {
    link.rel = "noopener noreferrer";
    link.target = "_blank";
  }
  for (const pre of fragment.querySelectorAll("pre")) decorate(pre);
  return fragment;
}
