"""Markdown as Ganglion's interfaces show a reply: one set of rules for all of them.

The renderer is markdown-it-py: CommonMark plus tables and strikethrough, raw HTML off
(HTML in the model's text comes out escaped, as text), images off (a remote image would
leak the reader's address), single newlines kept as line breaks (as people expect in a
chat), and links only for safe schemes (markdown-it refuses `javascript:`, `vbscript:`,
`file:` and `data:`). The Matrix interface sends `render_html` as `formatted_body`; the
web chat sends `render_highlighted`, the same HTML with fenced code blocks highlighted by
Pygments (spans with `hl-` classes; the page's stylesheet colours them), because a
browser can show what Matrix clients would strip.

Pure functions, no I/O. Rendering is CPU work: a caller on the event loop renders one
reply at a time, or a page of them in a worker thread. The libraries are imported on the
first render, not at start-up.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

__all__ = ["render_highlighted", "render_html"]

_MAX_HIGHLIGHTED = 100_000  # characters of one code block; longer ones stay plain


@cache
def _renderer(highlighted: bool) -> MarkdownIt:
    from markdown_it import MarkdownIt

    options: dict[str, Any] = {"html": False, "breaks": True, "linkify": False}
    if highlighted:
        options["highlight"] = _highlight
    return MarkdownIt("commonmark", options).enable(["table", "strikethrough"]).disable("image")


def _highlight(code: str, language: str, _attrs: str) -> str:
    """A fenced block's code as highlighted spans; "" leaves it to markdown-it (escaped)."""
    from pygments import highlight
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    if not language or len(code) > _MAX_HIGHLIGHTED:
        return ""
    try:
        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, _formatter()))


@cache
def _formatter() -> Any:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(nowrap=True, classprefix="hl-")


def render_html(text: str) -> str:
    """`text` (Markdown) as safe HTML; a fenced block is `<pre><code class="language-x">`."""
    html: str = _renderer(False).render(text)
    return html.strip()


def render_highlighted(text: str) -> str:
    """`render_html`, with the code of fenced blocks in a known language highlighted."""
    html: str = _renderer(True).render(text)
    return html.strip()
