"""Conversation titles in real headless Chromium: the list shows the first line of the
first message at once, and the model's short title as soon as it lands, in every tab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import BrowserContext, expect

from ganglion.titles import TITLE_INSTRUCTIONS
from tests.browser.conftest import open_chat, screenshot, send
from tests.support.fakellm import Reply, Step
from tests.support.web import serve_in_thread

FINISHED = ".msg.assistant:not(.streaming)"


async def new_gate() -> trio.Event:
    return trio.Event()


async def open_gate(gate: trio.Event) -> None:
    gate.set()


def test_the_list_shows_the_first_line_then_the_models_title(
    context: BrowserContext, tmp_path: Path
) -> None:
    with serve_in_thread(tmp_path, web={"generate_titles": True}) as server:
        gate = server.call(new_gate)

        def answer(body: dict[str, Any]) -> Step:
            if body["messages"][0]["content"] == TITLE_INSTRUCTIONS:
                return Reply("Porto weekend by train.", gate=gate)
            return Reply("Friday: the 8:05 train. Saturday: the Ribeira. Sunday: back.")

        server.fake.responder = answer
        page = open_chat(context, server)
        other = open_chat(context, server)  # another tab, on a conversation of its own
        send(page, "## Plan a *weekend* in Porto\nwith trains, food and a museum")
        expect(page.locator(f"{FINISHED} .text").last).to_contain_text("the 8:05 train")
        entry = page.locator("#threads li.thread a")
        elsewhere = other.locator("#threads li.thread a")
        # The model is still writing the title: the first line, cleaned, names it.
        expect(entry).to_have_text(["Plan a weekend in Porto"])
        expect(page.locator("#title")).to_have_text("Plan a weekend in Porto")
        expect(elsewhere).to_have_text(["Plan a weekend in Porto"])
        screenshot(page, "titles-first-line")
        server.call(open_gate, gate)
        expect(entry).to_have_text(["Porto weekend by train"])
        expect(page.locator("#title")).to_have_text("Porto weekend by train")
        expect(elsewhere).to_have_text(["Porto weekend by train"])
        screenshot(page, "titles-generated")
        screenshot(other, "titles-generated-other-tab")
