"""Approvals in the web chat (issue 32), in real headless Chromium at desktop and phone
sizes: the card with the exact call and its three buttons, answered by keyboard; "Always
allow this" writing its rule; a reload while a question is open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import open_chat, screenshot, send, size_of
from tests.support.fakellm import Reply, calling
from tests.support.web import ServerThread, serve_in_thread

CAUTIOUS = {"approval": {"default": {"shell": "ask"}, "rules": []}}
FINISHED = ".msg.assistant:not(.streaming)"


@pytest.fixture
def cautious(tmp_path: Path) -> Iterator[ServerThread]:
    with serve_in_thread(tmp_path, tools=CAUTIOUS) as server:
        yield server


def test_allow_once_by_keyboard_runs_the_call(
    sized: BrowserContext, cautious: ServerThread, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    cautious.fake.script(calling("shell", command=f"echo yes > {marker}"), Reply("It ran."))
    page = open_chat(sized, cautious)
    send(page, "write the marker")
    card = page.locator(".approval")
    expect(card.locator(".approval-call")).to_have_text(f"shell: echo yes > {marker}")
    # A redirection: no rule can name exactly this call, so "Always" is not offered.
    expect(card.get_by_role("button")).to_have_text(["Allow once", "Deny"])
    screenshot(page, f"approval-asked-{size_of(sized)}")
    for name in ("Allow once", "Deny"):
        box = card.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["height"] >= 44
    assert not marker.exists()
    card.get_by_role("button", name="Allow once").focus()
    page.keyboard.press("Enter")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("It ran.")
    expect(card.locator(".approval-state")).to_have_text("Allowed once")
    expect(card.get_by_role("button")).to_have_count(0)
    assert marker.read_text() == "yes\n"
    screenshot(page, f"approval-allowed-{size_of(sized)}")


def test_always_allow_writes_the_rule_and_the_next_call_runs_unasked(
    context: BrowserContext, cautious: ServerThread, tmp_path: Path
) -> None:
    cautious.fake.script(
        calling("shell", command="echo hello"),
        Reply("Said hello."),
        calling("shell", command="echo hello"),
        Reply("Said hello again."),
    )
    page = open_chat(context, cautious)
    send(page, "say hello")
    card = page.locator(".approval")
    expect(card.get_by_role("button")).to_have_text(["Allow once", "Always allow this", "Deny"])
    card.get_by_role("button", name="Always allow this").click()
    expect(page.locator(".approval .approval-state")).to_have_text(
        "Always allowed (rule added to approvals.yaml)"
    )
    expect(page.locator(f"{FINISHED} .text")).to_have_text("Said hello.")
    send(page, "again")
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["Said hello.", "Said hello again."])
    expect(page.locator(".approval")).to_have_count(1)
    rules = yaml.safe_load((tmp_path / "approvals.yaml").read_text())["rules"]
    assert [(r["tool"], r["command"], r["decision"]) for r in rules] == [
        ("shell", "echo hello", "allow")
    ]


def test_a_reload_while_a_question_is_open_asks_it_again(
    context: BrowserContext, cautious: ServerThread, tmp_path: Path
) -> None:
    marker = tmp_path / "never.txt"
    cautious.fake.script(calling("shell", command=f"touch {marker}"), Reply("It was denied."))
    page = open_chat(context, cautious)
    send(page, "touch it")
    expect(page.locator(".approval .approval-call")).to_have_text(f"shell: touch {marker}")
    page.reload()
    card = page.locator(".approval")
    expect(card).to_have_count(1)
    expect(card.locator(".approval-call")).to_have_text(f"shell: touch {marker}")
    screenshot(page, "approval-after-reload")
    card.get_by_role("button", name="Deny").click()
    expect(page.locator(f"{FINISHED} .text")).to_have_text("It was denied.")
    expect(card.locator(".approval-state")).to_have_text("Denied")
    assert not marker.exists()
    second = context.new_page()
    second.goto(page.url)
    expect(second.locator(".msg.assistant .text")).to_have_text("It was denied.")
    expect(second.locator(".approval")).to_have_count(0)  # settled: not asked again
