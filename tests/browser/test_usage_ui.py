"""The conversation's usage and model in the web chat's header (issue 34), in real
headless Chromium at desktop and phone sizes: the figures are the fake model's reported
usage, the model follows `/model`, and the view is reached and closed by keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import open_chat, screenshot, send, size_of
from tests.support.fakellm import Reply
from tests.support.web import ServerThread, serve_in_thread

FINISHED = ".msg.assistant:not(.streaming)"


@pytest.fixture
def priced(tmp_path: Path) -> Iterator[ServerThread]:
    models = {"small": {"base_url": "http://127.0.0.1:9/v1", "model": "tiny-1b"}}
    with serve_in_thread(
        tmp_path,
        llm={
            "price": {"input_per_million": 2.0, "output_per_million": 8.0, "currency": "EUR"},
            "models": models,
        },
    ) as server:
        yield server


def test_the_header_shows_what_the_conversation_spent_and_its_model(
    sized: BrowserContext, priced: ServerThread
) -> None:
    priced.fake.script(Reply("first", usage=(1000, 50)), Reply("second", usage=(2000, 100)))
    page = open_chat(sized, priced)
    send(page, "hello")
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["first"])
    button = page.get_by_role("button", name="Usage")
    button.focus()
    page.keyboard.press("Enter")
    panel = page.get_by_role("dialog", name="Usage of this conversation")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("This conversation1,000 in, 50 out, 1 call, 0.0024 EUR")
    expect(panel).to_contain_text("fake (the default)")
    send(page, "again")
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["first", "second"])
    # Open while the answer came: brought up to date.
    expect(panel).to_contain_text("This conversation3,000 in, 150 out, 2 calls, 0.0072 EUR")
    expect(panel).to_contain_text("Every conversation today3,000 in, 150 out, 2 calls")
    screenshot(page, f"usage-{size_of(sized)}")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(button).to_be_focused()
    send(page, "/model small")
    expect(page.locator(".msg.notice").last).to_contain_text("small")
    button.click()
    expect(panel).to_contain_text("small (tiny-1b)")
