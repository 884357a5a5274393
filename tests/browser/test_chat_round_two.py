"""The web chat people keep open all day (issue 13), in real headless Chromium at desktop
and phone sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import (
    DESKTOP,
    fire_reminder,
    free_port,
    open_chat,
    screenshot,
    seed,
    send,
    size_of,
)
from tests.support.fakellm import HTTPError, Reply
from tests.support.web import ServerThread, serve_in_thread


def open_list(page: Page) -> None:
    """The conversation list: always there on a desktop, a drawer on a phone."""
    if page.locator("#open-drawer").is_visible():
        page.click("#open-drawer")
        expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)


def test_a_closed_conversation_reopens_from_the_list_and_from_its_url(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Cats sleep a lot."), Reply("ok"))
    page = open_chat(sized, server)
    first = page.evaluate("window.ganglionThread")
    send(page, "Tell me about cats")
    expect(page.locator(".msg.assistant .text")).to_have_text("Cats sleep a lot.")
    url = page.url
    assert url.endswith(f"/c/{first}")
    page.close()

    other = open_chat(sized, server)  # a new tab: a new conversation
    assert other.evaluate("window.ganglionThread") != first
    expect(other.locator("#welcome")).to_be_visible()
    open_list(other)
    link = other.locator("#threads a", has_text="Tell me about cats")
    expect(link).to_be_visible()
    screenshot(other, f"sidebar-{size_of(sized)}")
    link.click()
    expect(other.locator(".msg.assistant .text")).to_have_text("Cats sleep a lot.")
    assert other.evaluate("window.ganglionThread") == first
    expect(other.locator("#title")).to_have_text("Tell me about cats")

    bookmark = sized.new_page()
    bookmark.goto(url)
    expect(bookmark.locator(".msg.user .text")).to_have_text("Tell me about cats")
    expect(bookmark.locator(".msg.assistant .text")).to_have_text("Cats sleep a lot.")


def test_conversations_are_renamed_archived_deleted_and_searched(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Paris is the capital."), Reply("Pasta needs salt."))
    first = open_chat(context, server)
    send(first, "capital of France?")
    expect(first.locator(".msg.assistant .text")).to_have_text("Paris is the capital.")
    second = open_chat(context, server)
    send(second, "how to cook pasta")
    expect(second.locator(".msg.assistant .text")).to_have_text("Pasta needs salt.")
    items = second.locator("#threads li.thread a")
    expect(items).to_have_text(["how to cook pasta", "capital of France?"])  # newest first

    second.get_by_role("button", name="Actions for “how to cook pasta”").click()
    second.get_by_role("menuitem", name="Rename").click()
    second.get_by_role("textbox", name="Rename “how to cook pasta”").fill("Cooking")
    second.keyboard.press("Enter")
    expect(items).to_have_text(["Cooking", "capital of France?"])
    expect(second.locator("#title")).to_have_text("Cooking")

    second.fill("#search", "pari")
    hits = second.locator("#results a.hit")
    expect(hits).to_have_count(1)
    expect(hits.locator("mark")).to_have_text("Paris")
    screenshot(second, "search")
    second.fill("#search", "")

    second.get_by_role("button", name="Actions for “capital of France?”").click()
    second.get_by_role("menuitem", name="Archive").click()
    expect(items).to_have_text(["Cooking"])
    second.click("#show-archived")
    expect(items).to_have_text(["capital of France?"])
    second.click("#show-archived")

    second.get_by_role("button", name="Actions for “Cooking”").click()
    second.get_by_role("menuitem", name="Delete…").click()
    second.get_by_role("dialog").get_by_role("button", name="Delete").click()
    second.get_by_role("button", name="Dismiss").click()
    second.wait_for_url("**/c/web_*")
    expect(second.locator(".msg")).to_have_count(0)
    expect(second.locator("#threads li.thread a")).to_have_count(0)


def test_scrolling_up_goes_back_through_500_messages(
    context: BrowserContext, server: ServerThread, tmp_path: Path
) -> None:
    thread = "web_5005005005005005"
    seed(tmp_path / "conversation.db", thread, 500)
    page = context.new_page()
    page.goto(f"{server.web.base}/c/{thread}#token={server.web.token}")
    texts = page.locator(".msg .text")
    expect(texts.last).to_have_text("message 499")
    expect(texts).to_have_count(200)
    while (shown := texts.count()) < 500:
        page.locator("#transcript").evaluate("node => { node.scrollTop = 0; }")
        expect(texts).not_to_have_count(shown)  # each scroll to the top brings a page more
    expect(texts).to_have_count(500)
    expect(texts.first).to_have_text("message 0")
    assert texts.all_text_contents() == [f"message {n}" for n in range(500)]
    expect(page.locator("#older")).to_be_hidden()


def test_an_oversize_message_is_failed_before_sending_and_its_text_kept(
    sized: BrowserContext, tmp_path: Path
) -> None:
    with serve_in_thread(tmp_path, web={"max_message_bytes": 1024}) as server:
        page = open_chat(sized, server)
        big = "too long " * 200
        send(page, big)
        bubble = page.locator(".msg.user")
        expect(bubble).to_have_attribute("data-state", "failed")
        expect(bubble.locator(".state")).to_contain_text("Not sent: too long")
        screenshot(page, f"failed-{size_of(sized)}")
        bubble.get_by_role("button", name="Edit").click()
        assert page.input_value("#input") == big
        expect(page.locator(".msg.user")).to_have_count(0)
        assert server.fake.requests == []


def test_a_burst_past_the_rate_limit_ends_answered_or_visibly_failed(
    context: BrowserContext, tmp_path: Path
) -> None:
    with serve_in_thread(tmp_path, web={"frame_burst": 6, "max_frames_per_second": 0.01}) as server:
        page = open_chat(context, server)
        # The hello and the list of conversations take two frames of the burst: the list
        # shown means both went out before the messages do.
        expect(page.locator("#threads li").first).to_be_attached()
        for n in range(10):
            page.fill("#input", f"burst {n}")
            page.press("#input", "Enter")
        bubbles = page.locator(".msg.user")
        expect(bubbles).to_have_count(10)
        expect(page.locator('.msg.user[data-state="pending"]')).to_have_count(0, timeout=20_000)
        expect(page.locator('.msg.user[data-state="accepted"]')).to_have_count(0, timeout=20_000)
        states = [bubbles.nth(n).get_attribute("data-state") for n in range(10)]
        assert set(states) == {"answered", "failed"}
        failed = page.locator('.msg.user[data-state="failed"]')
        expect(failed.first.locator(".state")).to_contain_text("too many messages")
        answered = states.count("answered")
        expect(page.locator(".msg.assistant")).to_have_count(answered)
        screenshot(page, "burst")


def test_a_message_typed_while_disconnected_is_visibly_pending_until_accepted(
    context: BrowserContext, tmp_path: Path
) -> None:
    port = free_port()
    with serve_in_thread(tmp_path, web={"port": port}) as first:
        page = open_chat(context, first)
    expect(page.locator("#status")).to_have_text("Disconnected")
    expect(page.locator("#retry-now")).to_be_visible()
    send(page, "typed offline")
    expect(page.locator(".msg.user")).to_have_attribute("data-state", "pending")
    expect(page.locator(".msg.user .state")).to_have_text("Sending…")
    with serve_in_thread(tmp_path, web={"port": port}):
        page.click("#retry-now")
        expect(page.locator(".msg.user")).to_have_attribute(
            "data-state", "answered", timeout=20_000
        )
        expect(page.locator(".msg.user")).to_have_count(1)


def test_a_reminder_is_a_chip_live_and_after_reload(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Time to stretch!"))
    page = open_chat(sized, server)
    thread = page.evaluate("window.ganglionThread")
    page.evaluate("Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    fire_reminder(server, thread, "stretch your legs")
    expect(page.locator(".chip")).to_have_text("Reminder: stretch your legs")
    expect(page.locator(".msg.assistant .text")).to_have_text("Time to stretch!")
    expect(page).to_have_title(re.compile(r"^\(2\) "))  # the reminder and its reply, while away
    page.reload()
    expect(page.locator(".chip")).to_have_text("Reminder: stretch your legs")
    expect(page.locator(".msg.user")).to_have_count(0)
    expect(page.locator("#transcript")).not_to_contain_text("scheduled earlier")
    screenshot(page, f"reminder-chip-{size_of(sized)}")


def test_commands_and_their_output_come_back_after_reload(
    context: BrowserContext, server: ServerThread
) -> None:
    page = open_chat(context, server)
    page.fill("#input", "/hel")
    expect(page.locator("#commands li")).to_have_count(1)
    expect(page.locator("#commands li strong")).to_have_text("/help")
    page.press("#input", "Tab")
    assert page.input_value("#input") == "/help "
    page.press("#input", "Enter")
    expect(page.locator(".msg.notice")).to_contain_text("/new")
    page.reload()
    expect(page.locator(".msg.user.command .text")).to_have_text("/help")
    expect(page.locator(".msg.notice")).to_contain_text("/new")


def test_the_box_is_focused_grows_and_send_waits_for_text(
    context: BrowserContext, server: ServerThread
) -> None:
    page = open_chat(context, server)
    expect(page.locator("#input")).to_be_focused()
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#welcome")).to_be_visible()
    height = page.locator("#input").bounding_box()["height"]  # type: ignore[index]
    page.fill("#input", "word " * 80)
    expect(page.locator("#send")).to_be_enabled()
    assert page.locator("#input").bounding_box()["height"] > height  # type: ignore[index]
    assert page.get_attribute("#input", "dir") == "auto"
    page.fill("#input", "שלום עולם")
    page.press("#input", "Enter")
    expect(page.locator(".msg.user .text")).to_have_attribute("dir", "auto")
    expect(page.locator("#welcome")).to_be_hidden()
    response = page.request.get(f"{server.web.base}/favicon.ico")
    assert response.ok and "svg" in response.headers["content-type"]


def test_a_tab_whose_token_is_no_longer_valid_says_so(
    context: BrowserContext, tmp_path: Path
) -> None:
    port = free_port()
    with serve_in_thread(tmp_path, web={"port": port}) as first:
        page = open_chat(context, first)
    # The daemon comes back with another token: the one the tab kept no longer opens it.
    with serve_in_thread(tmp_path, web={"port": port, "token": "a-new-token-" + "x" * 20}):
        expect(page.locator("#banner")).to_contain_text("no longer valid", timeout=20_000)
        expect(page.locator("#status")).to_have_text("not signed in")
        expect(page.locator("#signin")).to_be_visible()
        screenshot(page, "token-refused")


CONTRAST = """
() => {
  const parse = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const worst = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !node.checkVisibility()) continue;
    if (node.closest(".sr-only")) continue;
    const fg = parse(getComputedStyle(node).color);
    const [a, b] = [lum(fg), lum(background(node))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) worst.push(`${node.className || node.tagName}: ${ratio.toFixed(2)}`);
  }
  return worst;
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_has_contrast_of_at_least_4_5(
    browser: Browser, server: ServerThread, scheme: str
) -> None:
    context = browser.new_context(color_scheme=scheme, **DESKTOP)  # type: ignore[arg-type]
    server.fake.script(Reply(MARKDOWN))
    page = open_chat(context, server)
    send(page, "hello")
    expect(page.locator(".msg.assistant:not(.streaming)")).to_have_count(1)
    send(page, "/nonsense")
    expect(page.locator(".msg.notice")).to_have_count(1)
    page.evaluate(
        "document.getElementById('banner').hidden = false;"
        "document.getElementById('banner').textContent = 'an error banner';"
    )
    page.fill("#search", "hel")
    expect(page.locator("#results a.hit").first).to_be_visible()
    assert page.evaluate(CONTRAST) == []
    screenshot(page, f"contrast-{scheme}")
    context.close()


def test_a_failed_turn_is_stored_and_retried(context: BrowserContext, server: ServerThread) -> None:
    server.fake.script(HTTPError(400, "no such model"), Reply("second try works"))
    page = open_chat(context, server)
    send(page, "please answer")
    error = page.locator(".msg.error")
    expect(error).to_have_count(1)
    page.reload()
    expect(error).to_have_count(1)  # the failure is stored, in its place
    error.get_by_role("button", name="Retry").click()
    expect(page.locator(".msg.assistant .text")).to_have_text("second try works")
    expect(page.locator(".msg.user .text")).to_have_text(["please answer"])  # answered again


NOTIFICATIONS = """
window.shown = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.shown.push([title, options.body]); }
};
Object.defineProperty(document, "hidden", { value: true, configurable: true });
"""


def test_a_reply_in_a_background_tab_shows_in_the_title_and_notifies(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("done while you were away"))
    context.add_init_script(NOTIFICATIONS)
    page = open_chat(context, server)
    send(page, "take your time")
    expect(page.locator(".msg.assistant .text")).to_have_text("done while you were away")
    expect(page).to_have_title(re.compile(r"^\(1\) take your time"))
    assert page.evaluate("window.shown") == [["Ganglion", "done while you were away"]]
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page).to_have_title("take your time · Ganglion")


MARKDOWN = """An answer with `code` and a [link](https://example.org).

| tool | use |
|------|-----|
| shell | run commands |

> a quote

---

- one
  - nested

```python
def greet(name):
    return f"hi {name}"  # says hi
```
"""


def test_markdown_as_people_write_it(sized: BrowserContext, server: ServerThread) -> None:
    server.fake.script(Reply(MARKDOWN, chunk_size=20, chunk_delay=0.01))
    page = open_chat(sized, server)
    send(page, "show me markdown")
    for view in ("live", "restored"):
        reply = page.locator(".msg.assistant:not(.streaming)")
        expect(reply.locator("table th")).to_have_text(["tool", "use"])
        expect(reply.locator("blockquote")).to_have_text("a quote")
        expect(reply.locator("hr")).to_have_count(1)
        expect(reply.locator("ul ul li")).to_have_text("nested")
        expect(reply.locator(".codeblock .language")).to_have_text("python")
        expect(reply.locator(".codeblock .hljs-keyword").first).to_have_text("def")
        expect(reply.locator(".codeblock .hljs-comment")).to_have_text("# says hi")
        expect(reply.locator(".codeblock button.copy")).to_have_text("Copy")
        expect(reply.locator(".actions button.copy")).to_have_text("Copy reply")
        link = reply.locator("a")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        screenshot(page, f"markdown-{view}-{size_of(sized)}")
        if view == "live":
            page.reload()


ANNOUNCEMENTS = """
window.announced = [];
document.addEventListener("DOMContentLoaded", () => {
  const node = document.getElementById("announcer");
  new MutationObserver(() => {
    if (node.textContent) window.announced.push(node.textContent);
  }).observe(node, { childList: true, characterData: true, subtree: true });
});
"""


def test_a_screen_reader_hears_who_wrote_what_and_only_the_finished_reply(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("one two three four five six", chunk_size=3, chunk_delay=0.02))
    context.add_init_script(ANNOUNCEMENTS)
    page = open_chat(context, server)
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    expect(page.get_by_role("status")).to_have_text("connected")
    assert page.locator("#banner").get_attribute("role") == "alert"
    assert page.locator("#transcript").get_attribute("aria-live") == "off"
    send(page, "count")
    expect(page.locator(".msg.assistant:not(.streaming)")).to_have_count(1)
    expect(page.locator(".msg.user")).to_contain_text("You said: count")
    expect(page.locator(".msg.assistant")).to_contain_text("Ganglion said: one two")
    # Announced a moment after it is shown; anything announced before it is listed first.
    page.wait_for_function("() => window.announced.length > 0")
    assert page.evaluate("window.announced") == ["Ganglion said: one two three four five six"]


def test_stop_during_a_slow_stream_keeps_the_partial_answer(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("one two three four five six seven", chunk_size=4, chunk_delay=0.4))
    page = open_chat(sized, server)
    send(page, "count slowly")
    expect(page.locator(".msg.assistant.streaming")).to_be_visible()
    page.get_by_role("button", name="Stop").click()
    reply = page.locator(".msg.assistant:not(.streaming) .text")
    expect(reply).to_contain_text("one")
    expect(page.locator(".msg.notice .text")).to_have_text("Stopped.")
    expect(page.locator("#activity")).to_be_hidden()
    expect(page.locator(".msg.user")).to_have_attribute("data-state", "answered")
    assert "seven" not in reply.inner_text()
    screenshot(page, f"stopped-{size_of(sized)}")
    page.reload()
    expect(page.locator(".msg.notice .text")).to_have_text("Stopped.")
    assert "seven" not in page.locator(".msg.assistant .text").inner_text()
