"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's sync API,
against the whole daemon running in a background thread with the fake model."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from ganglion.messages import ReminderDue
from tests.support.web import ServerThread, serve_in_thread

CHROMIUM = os.environ.get("GANGLION_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The microphone: Chromium's fake device (a beep) and no permission prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# Screenshots to look at: test-artifacts/ unless GANGLION_ARTIFACTS names another place.
ARTIFACTS = Path(os.environ.get("GANGLION_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1100, "height": 760}}
# What a page shows after a model call may take a few seconds on a loaded 2-core machine
# (the CI's): an expectation waits up to 10 s for it (Playwright's default is 5 s).
expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`); "
            "`uv run nox -s browser` does it when run as root"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with serve_in_thread(tmp_path) as thread:
        yield thread


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    yield context
    context.close()


@pytest.fixture(params=["desktop", "phone"])
def sized(request: pytest.FixtureRequest, browser: Browser) -> Iterator[BrowserContext]:
    """A browser context at a desktop's size, then at a phone's."""
    context = browser.new_context(**(DESKTOP if request.param == "desktop" else PHONE))
    yield context
    context.close()


def size_of(context: BrowserContext) -> str:
    pages = context.pages
    width = pages[0].viewport_size["width"] if pages and pages[0].viewport_size else 1000
    return "phone" if width < 500 else "desktop"


def open_chat(context: BrowserContext, server: ServerThread) -> Page:
    page = context.new_page()
    page.goto(f"{server.web.base}/#token={server.web.token}")
    page.wait_for_selector("#status.connected")
    return page


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save what the page shows as `name`.png (`full_page` False: the viewport alone, as
    the reader sees a scrolled conversation)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def send(page: Page, text: str) -> None:
    """Type `text` in the message box and press Enter, as a person sends."""
    page.fill("#input", text)
    page.press("#input", "Enter")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed(db: Path, thread: str, count: int) -> None:
    """`count` messages in `thread`, written straight into the store's database."""
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT OR IGNORE INTO threads (thread_id, interface, created_at, epoch, title, "
            "updated_at) VALUES (?, 'web', ?, 0, 'long one', ?)",
            (thread, now, now),
        )
        conn.executemany(
            "INSERT INTO messages (thread_id, epoch, role, content, created_at) "
            "VALUES (?, 0, ?, ?, ?)",
            [
                (thread, "user" if n % 2 == 0 else "assistant", f"message {n}", now)
                for n in range(count)
            ],
        )


def fire_reminder(server: ServerThread, thread: str, text: str) -> None:
    """A reminder of `text` falls due in `thread` now, as the reminder actor hands it over."""
    due = ReminderDue(thread, "r1", "2026-01-01T09:00", text)

    async def fire() -> None:
        with trio.fail_after(10):
            await server.web.services.threads.ask(
                thread, lambda accepted: replace(due, accepted=accepted)
            )

    server.call(fire)
