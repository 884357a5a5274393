"""Control of the conversation (issue 13 items 5 and 7), in real headless Chromium at
desktop and phone sizes: Regenerate and Edit on the last turn, the immediate reconnect
when the tab gets its focus or its network back, and "New messages ↓"."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import (
    fire_reminder,
    free_port,
    open_chat,
    screenshot,
    seed,
    send,
    size_of,
)
from tests.support.fakellm import Reply
from tests.support.web import ServerThread, serve_in_thread

FINISHED = ".msg.assistant:not(.streaming)"


def model_was_sent(server: ServerThread) -> list[str]:
    """The conversation in the model's last request, without the system prompt."""
    return [m["content"] for m in server.fake.requests[-1]["messages"][1:]]


def test_regenerate_replaces_the_last_answer_also_after_reload(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("a first answer"), Reply("a better answer"))
    page = open_chat(sized, server)
    send(page, "tell me something")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("a first answer")
    regenerate = page.get_by_role("button", name="Regenerate this answer")
    expect(regenerate).to_be_visible()
    screenshot(page, f"regenerate-{size_of(sized)}")
    regenerate.focus()  # by keyboard
    page.keyboard.press("Enter")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("a better answer")
    expect(page.locator(".msg.user .text")).to_have_text(["tell me something"])
    expect(page.locator(".msg.user")).to_have_attribute("data-state", "answered")
    expect(regenerate).to_be_visible()  # on the new answer: it is the last one now
    assert model_was_sent(server) == ["tell me something"]
    screenshot(page, f"regenerated-{size_of(sized)}")
    page.reload()
    expect(page.locator(".msg.assistant .text")).to_have_text(["a better answer"])
    expect(page.locator(".msg.user .text")).to_have_text(["tell me something"])


def test_edit_of_the_last_message_answers_the_new_text_also_after_reload(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(
        Reply("Hello!"),
        Reply("what is helo? " * 4, chunk_size=6, chunk_delay=0.15),
        Reply("Bonjour !"),
    )
    page = open_chat(sized, server)
    send(page, "hi")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("Hello!")
    send(page, "say helo in french")
    expect(page.locator(".msg.assistant.streaming")).to_be_visible()
    expect(page.locator(".turn-action")).to_have_count(0)  # nothing to take back while it runs
    expect(page.locator(FINISHED)).to_have_count(2)
    edit = page.get_by_role("button", name="Edit your last message")
    expect(edit).to_have_count(1)  # on the last message only
    expect(page.locator(".msg.user").last.get_by_role("button")).to_have_text(["Edit"])

    edit.click()
    box = page.get_by_role("textbox", name="Edit your message")
    expect(box).to_be_focused()
    expect(box).to_have_value("say helo in french")
    box.press("Escape")  # cancelled: as it was, the focus back on Edit
    expect(box).to_have_count(0)
    expect(edit).to_be_focused()
    expect(page.locator(".msg.user .text").last).to_have_text("say helo in french")

    edit.click()
    box.fill("say hello in French")
    screenshot(page, f"editing-{size_of(sized)}")
    box.press("Enter")  # saves
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["Hello!", "Bonjour !"])
    expect(page.locator(".msg.user .text")).to_have_text(["hi", "say hello in French"])
    assert model_was_sent(server) == ["hi", "Hello!", "say hello in French"]
    screenshot(page, f"edited-{size_of(sized)}")
    page.reload()
    expect(page.locator(".msg.user .text")).to_have_text(["hi", "say hello in French"])
    expect(page.locator(".msg.assistant .text")).to_have_text(["Hello!", "Bonjour !"])
    expect(page.locator("#transcript")).not_to_contain_text("helo")


def test_a_rewind_refused_leaves_the_conversation_as_it_was(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("first"), Reply("second"))
    page = open_chat(context, server)
    send(page, "one")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("first")
    # Another tab of the same conversation says something after it.
    other = context.new_page()
    other.goto(page.url)
    send(other, "two")
    expect(other.locator(f"{FINISHED} .text")).to_have_text(["first", "second"])
    page.get_by_role("button", name="Regenerate this answer").click()
    expect(page.locator("#banner")).to_contain_text("Only your last message")
    expect(page.locator(".rewinding")).to_have_count(0)
    expect(page.locator(".msg.assistant .text")).to_have_text(["first", "second"])
    assert len(server.fake.requests) == 2


@pytest.mark.parametrize("trigger", ["online", "focus", "retry-now"])
def test_the_tab_reconnects_at_once_when_it_gets_its_focus_or_network_back(
    sized: BrowserContext, tmp_path: Path, trigger: str
) -> None:
    port = free_port()
    page = sized.new_page()
    page.clock.install()  # the backoff's timer fires only when the test says so
    with serve_in_thread(tmp_path, web={"port": port}) as first:
        page.goto(f"{first.web.base}/#token={first.web.token}")
        expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#status")).to_have_text("Disconnected")
    retry = page.get_by_role("button", name="Retry now")
    expect(retry).to_be_visible()
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    screenshot(page, f"disconnected-{size_of(sized)}")
    with serve_in_thread(tmp_path, web={"port": port}):
        # The page's clock, held, moves on less than the shortest backoff (500 ms): no
        # retry of the page's own, only the trigger reconnects.
        page.clock.run_for(400)
        expect(page.locator("#status")).to_have_text("Disconnected")
        if trigger == "online":
            sized.set_offline(True)
            sized.set_offline(False)
        elif trigger == "focus":
            page.evaluate("window.dispatchEvent(new Event('focus'))")
        else:
            retry.click()
        expect(page.locator("#status")).to_have_text("connected", timeout=5000)
        expect(retry).to_be_hidden()
        send(page, "back?")
        expect(page.locator(f"{FINISHED} .text")).to_have_text("ok")


def scrolled_to_bottom(page: Page) -> bool:
    return bool(
        page.locator("#transcript").evaluate(
            "node => node.scrollHeight - node.scrollTop - node.clientHeight < 80"
        )
    )


def test_a_reply_while_scrolled_up_shows_new_messages_which_scrolls_down(
    sized: BrowserContext, server: ServerThread, tmp_path: Path
) -> None:
    thread = "web_6006006006006006"
    seed(tmp_path / "conversation.db", thread, 60)
    server.fake.script(Reply("Time to stretch!"))
    page = sized.new_page()
    page.goto(f"{server.web.base}/c/{thread}#token={server.web.token}")
    expect(page.locator(".msg .text").last).to_have_text("message 59")
    jump = page.get_by_role("button", name="New messages ↓")
    expect(jump).to_be_hidden()
    page.locator("#transcript").evaluate("node => { node.scrollTop = node.scrollHeight / 3; }")
    fire_reminder(server, thread, "stretch")
    expect(jump).to_be_visible()
    assert not scrolled_to_bottom(page)  # the reader's place is kept
    screenshot(page, f"new-messages-{size_of(sized)}", full_page=False)
    jump.click()
    expect(jump).to_be_hidden()
    expect(page.locator(f"{FINISHED} .text").last).to_be_in_viewport()
    assert scrolled_to_bottom(page)


def test_regenerate_keeps_the_earlier_answers_as_versions_to_flip_between(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(
        Reply("a first answer"), Reply("a second answer"), Reply("a third answer"), Reply("ok")
    )
    page = open_chat(sized, server)
    send(page, "tell me something")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("a first answer")
    versions = page.get_by_role("group", name="Versions of this answer")
    expect(versions).to_have_count(0)  # one answer: nothing to choose
    regenerate = page.get_by_role("button", name="Regenerate this answer")
    for answer in ("a second answer", "a third answer"):
        regenerate.click()
        expect(page.locator(f"{FINISHED} .text")).to_have_text(answer)
    expect(versions.locator(".count")).to_have_text("3/3")
    expect(versions.get_by_role("button", name="Next version")).to_be_disabled()
    screenshot(page, f"versions-{size_of(sized)}", full_page=False)

    other = sized.new_page()  # a second tab follows the choice
    other.goto(page.url)
    expect(other.locator(f"{FINISHED} .text")).to_have_text("a third answer")
    versions.get_by_role("button", name="Previous version").click()
    expect(versions.locator(".count")).to_have_text("2/3")
    versions.get_by_role("button", name="Previous version").click()
    expect(page.locator(f"{FINISHED} .text")).to_have_text("a first answer")
    expect(versions.locator(".count")).to_have_text("1/3")
    expect(versions.get_by_role("button", name="Previous version")).to_be_disabled()
    expect(page.locator(".msg.user .text")).to_have_text(["tell me something"])
    expect(other.locator(f"{FINISHED} .text")).to_have_text("a first answer")
    expect(
        other.get_by_role("group", name="Versions of this answer").locator(".count")
    ).to_have_text("1/3")
    screenshot(page, f"versions-first-{size_of(sized)}", full_page=False)
    other.close()

    page.reload()  # the choice is kept
    expect(page.locator(f"{FINISHED} .text")).to_have_text("a first answer")
    expect(versions.locator(".count")).to_have_text("1/3")
    # The model sees only the version chosen.
    send(page, "and then?")
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["a first answer", "ok"])
    assert model_was_sent(server) == ["tell me something", "a first answer", "and then?"]
    expect(versions).to_have_count(0)  # the next turn has no versions of its own
    page.reload()
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["a first answer", "ok"])
    expect(page.locator("#transcript")).not_to_contain_text("a second answer")
