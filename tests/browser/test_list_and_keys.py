"""The conversation list under the days it was used, and the chat by keyboard (issue 31
item 8), in real headless Chromium: shortcuts, one tab stop for the whole list with the
arrow keys inside it, and a drawer on the phone that keeps the focus while it is open."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import PHONE, open_chat, screenshot, send
from tests.support.fakellm import Reply
from tests.support.web import ServerThread

FINISHED = ".msg.assistant:not(.streaming)"
ROWS = "#threads li.thread:not([hidden]) a"


def add_threads(db: Path, threads: dict[str, float]) -> None:
    """Conversations titled by their keys, last used at their values (epoch seconds)."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO threads (thread_id, interface, created_at, epoch, title, updated_at) "
            "VALUES (?, 'web', ?, 0, ?, ?)",
            [(f"web_{n:016x}", at, title, at) for n, (title, at) in enumerate(threads.items())],
        )


def active(page: Page) -> str:
    """What has the focus: an element's id, else its text or label."""
    return str(
        page.evaluate(
            "() => { const n = document.activeElement;"
            " return n.id || n.getAttribute('aria-label') || n.textContent.trim(); }"
        )
    )


def test_conversations_are_listed_under_the_day_they_were_used(
    browser: Browser, server: ServerThread, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 760}, timezone_id="UTC")
    page = open_chat(context, server)  # the store exists once the daemon serves
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    long_ago = midnight - timedelta(days=200)
    add_threads(
        tmp_path / "conversation.db",
        {
            "just now": now.timestamp() - 1,
            "last evening": (midnight - timedelta(hours=3)).timestamp(),
            "three days ago": (midnight - timedelta(days=2, hours=12)).timestamp(),
            "two weeks ago": (midnight - timedelta(days=14)).timestamp(),
            "long ago": long_ago.timestamp(),
        },
    )
    page.reload()
    month = long_ago.strftime("%B") + ("" if long_ago.year == now.year else f" {long_ago.year}")
    headings = page.locator("#threads li.day h2")
    expect(headings).to_have_text(
        ["Today", "Yesterday", "Previous 7 days", "Previous 30 days", month]
    )
    expect(page.locator(ROWS)).to_have_text(
        ["just now", "last evening", "three days ago", "two weeks ago", "long ago"]
    )
    # Each conversation comes right after its own day's heading.
    order = page.locator("#threads > li").evaluate_all(
        "nodes => nodes.map(n => n.classList.contains('day') ? '#' + n.textContent : n.textContent.replace('…', ''))"
    )
    assert order == [
        "#Today", "just now", "#Yesterday", "last evening", "#Previous 7 days",
        "three days ago", "#Previous 30 days", "two weeks ago", f"#{month}", "long ago",
    ]  # fmt: skip
    screenshot(page, "list-by-day", full_page=False)
    context.close()


def test_the_list_is_one_tab_stop_with_the_arrow_keys_inside(
    context: BrowserContext, server: ServerThread, tmp_path: Path
) -> None:
    page = open_chat(context, server)
    now = time.time()
    add_threads(tmp_path / "conversation.db", {f"chat {n}": now - n for n in range(12)})
    page.reload()
    expect(page.locator(ROWS)).to_have_count(12)
    page.locator("#search").focus()
    page.keyboard.press("Tab")
    expect(page.locator(ROWS).first).to_be_focused()
    page.keyboard.press("Tab")  # past the whole list at once
    assert not page.evaluate("document.activeElement.closest('#threads')"), active(page)
    page.keyboard.press("Shift+Tab")
    expect(page.locator(ROWS).first).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator(ROWS).nth(2)).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("button", name="Actions for “chat 2”")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(page.locator(ROWS).nth(2)).to_be_focused()
    page.keyboard.press("End")
    expect(page.locator(ROWS).last).to_be_focused()
    page.keyboard.press("Home")
    expect(page.locator(ROWS).first).to_be_focused()
    page.keyboard.press("ArrowUp")  # the first stays the first
    expect(page.locator(ROWS).first).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")  # back to where the list was left
    expect(page.locator(ROWS).last).to_be_focused()
    # Tabs from the top of the page to the conversation: few, not one per row.
    page.reload()
    page.wait_for_selector("#status.connected")
    presses = 0
    while not page.evaluate("document.activeElement.id === 'input'") and presses < 30:
        page.keyboard.press("Tab")
        presses += 1
    assert presses <= 12, f"{presses} Tabs to reach the message box"
    page.keyboard.press("Tab")
    screenshot(page, "list-keys", full_page=False)


def test_shortcuts_start_a_chat_search_reach_the_box_and_stop_an_answer(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Hi."), Reply("a long answer " * 40, chunk_size=4, chunk_delay=0.1))
    page = open_chat(context, server)
    send(page, "hello")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("Hi.")
    first = page.url
    page.keyboard.press("Control+k")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.press("Shift+Escape")
    expect(page.locator("#input")).to_be_focused()
    send(page, "tell me at length")
    expect(page.locator(".msg.assistant.streaming")).to_be_visible()
    page.locator("#transcript").focus()
    page.keyboard.press("Escape")  # stops the answer being written
    expect(page.locator(".msg.assistant.streaming")).to_have_count(0)
    expect(page.locator("#stop")).to_be_hidden()
    kept = page.locator(".msg.assistant .text").last.inner_text()
    assert kept and "a long answer".startswith(kept[:13]) and len(kept) < 200, kept  # cut short
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(lambda url: url != first and "/c/web_" in url)
    page.wait_for_selector("#status.connected")
    expect(page.locator("#welcome")).to_be_visible()


def test_the_phone_drawer_keeps_the_focus_and_esc_gives_it_back(
    browser: Browser, server: ServerThread, tmp_path: Path
) -> None:
    context = browser.new_context(**PHONE)  # type: ignore[arg-type]
    page = open_chat(context, server)
    add_threads(tmp_path / "conversation.db", {"garden": time.time(), "taxes": time.time() - 5})
    page.reload()
    page.wait_for_selector("#status.connected")
    page.locator("#open-drawer").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#search")).to_be_focused()
    inside = "document.activeElement.closest('#sidebar') !== null"
    for _ in range(12):  # round and round, never to the composer behind the scrim
        page.keyboard.press("Tab")
        assert page.evaluate(inside), active(page)
    for _ in range(6):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside), active(page)
    screenshot(page, "drawer-focus-phone", full_page=False)
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    expect(page.locator("#open-drawer")).to_be_focused()
    expect(page.locator("#open-drawer")).to_have_attribute("aria-expanded", "false")
    context.close()
