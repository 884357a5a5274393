"""Replies as Matrix content: safe HTML, and long replies cut on paragraph boundaries."""

from __future__ import annotations

from ganglion.matrix.render import (
    HTML_FORMAT,
    MAX_CONTENT_BYTES,
    content_size,
    edit_content,
    in_thread,
    message_content,
    reply_content,
    split_reply,
)


def html(text: str) -> str:
    return str(message_content(text)["formatted_body"])


def test_markdown_becomes_html_beside_the_plain_body() -> None:
    content = message_content("**bold** and `code`")
    assert content == {
        "msgtype": "m.text",
        "body": "**bold** and `code`",
        "format": HTML_FORMAT,
        "formatted_body": "<p><strong>bold</strong> and <code>code</code></p>",
    }


def test_raw_html_in_the_text_comes_out_as_text() -> None:
    rendered = html('<script>alert(1)</script> <img src=x onerror="steal()">')
    assert "<script" not in rendered and "<img" not in rendered
    assert "&lt;script&gt;" in rendered


def test_unsafe_links_and_remote_images_are_not_rendered() -> None:
    assert "href" not in html("[click](javascript:alert(1))")
    assert "href" not in html("[file](file:///etc/passwd)")
    assert "<img" not in html("![tracker](https://evil.example/pixel.png)")
    assert 'href="https://example.org"' in html("[ok](https://example.org)")


def test_line_breaks_tables_and_code_blocks() -> None:
    assert html("one\ntwo") == "<p>one<br />\ntwo</p>"
    assert "<table>" in html("| a | b |\n|---|---|\n| 1 | 2 |")
    assert html("```py\nx = 1\n```") == '<pre><code class="language-py">x = 1\n</code></pre>'


def test_a_notice_is_an_m_notice() -> None:
    assert message_content("done", msgtype="m.notice")["msgtype"] == "m.notice"


def test_a_short_reply_is_one_message() -> None:
    assert split_reply("hello\n\nworld") == ["hello\n\nworld"]


def test_a_long_reply_is_cut_between_paragraphs_under_the_limit() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 200 for i in range(60)]
    text = "\n\n".join(paragraphs)
    pieces = split_reply(text)
    assert len(pieces) > 1
    assert all(content_size(message_content(p)) <= MAX_CONTENT_BYTES for p in pieces)
    assert "\n\n".join(pieces) == text  # nothing lost, cut only where paragraphs end


def test_a_long_code_block_is_fenced_again_in_every_piece() -> None:
    code = "\n".join(f"line_{i} = {'x' * 60}" for i in range(1500))
    pieces = split_reply(f"Here:\n\n```python\n{code}\n```")
    assert len(pieces) > 2
    for piece in pieces[1:]:
        assert piece.startswith("```python\n") and piece.endswith("\n```")
    assert all(content_size(message_content(p)) <= MAX_CONTENT_BYTES for p in pieces)


def test_one_enormous_line_is_cut_between_characters() -> None:
    text = "&" * 100_000  # escaping makes every character five times larger
    pieces = split_reply(text)
    assert "".join(pieces) == text
    assert all(content_size(message_content(p)) <= MAX_CONTENT_BYTES for p in pieces)


def test_a_message_in_a_thread_replies_to_its_newest_event_as_a_fallback() -> None:
    content = in_thread("$root", message_content("hi"), "$latest")
    assert content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$latest"},
    }
    rich = in_thread("$root", reply_content("$asked", message_content("hi")), "$latest")
    assert rich["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$asked"},
    }
    edit = edit_content("$old", message_content("hi"))
    assert in_thread("$root", edit, "$latest") == edit  # an edit's relation is m.replace
