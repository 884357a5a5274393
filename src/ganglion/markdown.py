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
reply at a time, or a page of them in a worker thread.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = ["render_highlighted", "render_html"]

_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")
_MAX_HIGHLIGHTED = 100_000  # characters of one code block; longer ones stay plain


def _rules(**options: Any) -> MarkdownIt:
    return (
        MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, **options})
        .enable(["table", "strikethrough"])
        .disable("image")
    )


def _highlight(code: str, language: str, _attrs: str) -> str:
    """A fenced block's code as highlighted spans; "" leaves it to markdown-it (escaped)."""
    if not language or len(code) > _MAX_HIGHLIGHTED:
        return ""
    try:
        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, _FORMATTER))


_plain = _rules()
_highlighted = _rules(highlight=_highlight)


def render_html(text: str) -> str:
    """`text` (Markdown) as safe HTML; a fenced block is `<pre><code class="language-x">`."""
    html: str = _plain.render(text)
    return html.strip()


def render_highlighted(text: str) -> str:
    """`render_html`, with the code of fenced blocks in a known language highlighted."""
    html: str = _highlighted.render(text)
    return html.strip()
