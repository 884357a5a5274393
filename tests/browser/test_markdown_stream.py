"""One Markdown renderer for a reply while it streams and once it is done (issue 31 items
5 and 6), in real headless Chromium at desktop and phone sizes: tables (aligned), quotes,
task lists, bare links and math take shape while the reply streams, the finished reply is
the last frame drawn, and nothing in the model's text or its math runs."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import open_chat, screenshot, send, size_of
from tests.support.fakellm import Reply
from tests.support.web import ServerThread

STREAMING = ".msg.assistant.streaming"
FINISHED = ".msg.assistant:not(.streaming)"
CHUNK = 4

RICH = r"""Prices, **aligned**:

| item | price | note |
|:-----|------:|:----:|
| tea  | 2.50  | hot  |
| cake | 14.00 | new  |

> a quote
> on two lines

- [x] bought the tea
- [ ] bake the cake

Read https://example.org/docs first.

Euler: $e^{i\pi} + 1 = 0$, and \(a^2 + b^2\) too:

$$
\int_0^1 x^2 \, dx = \frac{1}{3}
$$

\[ \sqrt{2} \approx 1.414 \]

```python
def total(prices):
    return sum(prices)  # in pounds
```

That is all"""


def stalled(text: str) -> Reply:
    """A reply that streams all of `text` (its length a multiple of `CHUNK`, so that no
    chunk is cut) and then goes silent, still running, until it is stopped."""
    assert len(text) % CHUNK == 0, len(text) % CHUNK
    return Reply(text + " and more", chunk_size=CHUNK, stall_after=len(text) // CHUNK)


def padded(text: str) -> str:
    """`text` with dots at its end up to a whole number of chunks."""
    return text + "." * (-len(text) % CHUNK)


def shown(page: Page, selector: str) -> dict[str, object]:
    """The rendering of the reply's text in `selector`: its HTML and its height. (A
    Playwright screenshot leaves an empty style attribute on the checkboxes it saw.)"""
    return dict(
        page.eval_on_selector(
            f"{selector} .text",
            """node => ({
                html: node.innerHTML.replaceAll(' style=""', ""),
                height: node.getBoundingClientRect().height,
            })""",
        )
    )


def test_a_streaming_reply_is_rendered_as_it_comes_and_does_not_jump_when_done(
    sized: BrowserContext, server: ServerThread
) -> None:
    text = padded(RICH)
    server.fake.script(stalled(text))
    page = open_chat(sized, server)
    send(page, "what do things cost?")
    reply = page.locator(STREAMING)
    # All of it has streamed, and the turn still runs: this is the streaming rendering.
    expect(reply.locator(".text")).to_contain_text("That is all")
    expect(reply.locator("table th")).to_have_text(["item", "price", "note"])
    expect(reply.locator("table td.align-right")).to_have_text(["2.50", "14.00"])
    expect(reply.locator("table th.align-center")).to_have_text("note")
    expect(reply.locator("table td.align-left")).to_have_text(["tea", "cake"])
    expect(reply.locator("blockquote")).to_contain_text("a quote")
    boxes = reply.locator("li.task-list-item input[type=checkbox]")
    states = "boxes => boxes.map(box => [box.checked, box.disabled])"
    assert boxes.evaluate_all(states) == [[True, True], [False, True]]
    link = reply.locator('a[href="https://example.org/docs"]')
    expect(link).to_have_text("https://example.org/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(reply.locator("math")).to_have_count(4)
    expect(reply.locator(".math-block math[display=block]")).to_have_count(2)
    expect(reply.locator("math mfrac")).to_have_count(1)
    expect(reply.locator("math msqrt")).to_have_count(1)
    expect(reply.locator("annotation")).to_have_count(0)
    expect(reply.locator(".codeblock .hljs-keyword").first).to_have_text("def")
    expect(reply.locator(".codeblock .hljs-comment")).to_have_text("# in pounds")
    for raw in ("|---", "> a", "[x]", "$", "\\(", "\\["):
        expect(reply.locator(".text")).not_to_contain_text(raw)
    expect(page.locator("#activity-text")).to_have_text("writing…")
    screenshot(page, f"markdown-streaming-{size_of(sized)}")
    streamed = shown(page, STREAMING)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".msg.notice .text")).to_have_text("Stopped.")
    expect(page.locator(f"{FINISHED} .actions button.copy")).to_have_text("Copy reply")
    assert shown(page, FINISHED) == streamed
    screenshot(page, f"markdown-finished-{size_of(sized)}")
    page.reload()
    expect(page.locator(FINISHED)).to_have_count(1)
    assert shown(page, FINISHED)["html"] == streamed["html"]


def test_thinking_shows_only_until_the_first_text(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(stalled(padded("Here it comes")))
    page = open_chat(context, server)
    send(page, "hello")
    expect(page.locator(STREAMING)).to_contain_text("Here it comes")
    expect(page.locator("#activity-text")).to_have_text("writing…")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()


def test_an_unfinished_code_fence_is_a_code_block_while_it_streams(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(stalled(padded("Like this:\n\n```python\nimport os\nprint(os.getcwd())")))
    page = open_chat(context, server)
    send(page, "show me")
    reply = page.locator(STREAMING)
    expect(reply.locator(".codeblock pre")).to_contain_text("print(os.getcwd())")
    expect(reply.locator(".codeblock .language")).to_have_text("python")
    expect(reply.locator(".codeblock .hljs-keyword")).to_have_text("import")
    expect(reply.locator(".text")).not_to_contain_text("```")


def test_unclosed_math_shows_its_source_until_it_closes(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(
        stalled(padded("It costs $5 a month. The area is $\\pi r^2$ and\n\n$$\n\\frac{1}{"))
    )
    page = open_chat(context, server)
    send(page, "area?")
    reply = page.locator(STREAMING)
    expect(reply.locator(".text p").first).to_contain_text("It costs $5 a month.")
    expect(reply.locator("p math")).to_have_count(1)
    # The display formula being written: its source, plainly, not a broken layout.
    expect(reply.locator(".katex-error")).to_have_text("\\frac{1}{")


XSS = r"""<script>window.pwned = "script"</script>
<img src=x onerror="window.pwned = 'img'">
[click me](javascript:window.pwned='link') and [data](data:text/html,<script>alert(1)</script>)
<a href="javascript:window.pwned='raw'">raw link</a> <iframe src="javascript:alert(1)"></iframe>
$\href{javascript:window.pwned='math'}{x}$ and $<img src=x onerror="window.pwned='mathimg'">$
\(\htmlClass{x}{y}\) $$\includegraphics{https://example.org/pixel.png}$$
$$
</math><img src=x onerror="window.pwned='escape'">
$$
- [ ] <input onfocus="window.pwned='input'" autofocus>"""


def test_html_links_and_math_in_the_models_text_stay_inert(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply(XSS, chunk_size=7))
    page = open_chat(context, server)
    send(page, "try to break out")
    reply = page.locator(FINISHED)
    expect(reply.locator(".text")).to_contain_text('<script>window.pwned = "script"</script>')
    expect(reply.locator(".text")).to_contain_text("<img src=x onerror=")
    for tag in ("script", "img", "iframe", "a[href^=javascript]", "a[href^=data]", "[onerror]"):
        expect(reply.locator(tag)).to_have_count(0)
    expect(reply.locator("input")).to_have_count(1)
    expect(reply.locator("input")).to_be_disabled()
    expect(reply.locator("input")).to_have_attribute("type", "checkbox")
    assert page.evaluate("window.pwned") is None
    screenshot(page, "markdown-inert")
