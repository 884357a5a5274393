"""Markdown as the Matrix interface shows a reply.

The renderer is markdown-it-py: CommonMark plus tables and strikethrough, raw HTML off
(HTML in the model's text comes out escaped, as text), images off (a remote image would
leak the reader's address), single newlines kept as line breaks (as people expect in a
chat), and links only for safe schemes (markdown-it refuses `javascript:`, `vbscript:`,
`file:` and `data:`). The Matrix interface sends `render_html` as `formatted_body`. The
web chat renders in the page, with markdown-it (JavaScript) under the same rules
(`web/static/markdown.js`), so the server sends it the text alone.

Pure functions, no I/O. Rendering is CPU work: a caller on the event loop renders one
reply at a time. The library is imported on the first render, not at start-up.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

__all__ = ["render_html"]


@cache
def _renderer() -> MarkdownIt:
    from markdown_it import MarkdownIt

    options = {"html": False, "breaks": True, "linkify": False}
    return MarkdownIt("commonmark", options).enable(["table", "strikethrough"]).disable("image")


def render_html(text: str) -> str:
    """`text` (Markdown) as safe HTML; a fenced block is `<pre><code class="language-x">`."""
    html: str = _renderer().render(text)
    return html.strip()
