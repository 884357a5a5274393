"""The web chat, round three (issue 31), in real headless Chromium at desktop and phone
sizes: conversations that stay where they were put, in every tab at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from tests.browser.conftest import fire_reminder, open_chat, screenshot, seed, send, size_of
from tests.support.fakellm import HTTPError, Reply, calling
from tests.support.web import ServerThread, serve_in_thread

FINISHED = ".msg.assistant:not(.streaming)"
# The sizes the issue was found at.
SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


def open_list(page: Page) -> None:
    """The conversation list: always there on a desktop, a drawer on a phone."""
    if page.locator("#open-drawer").is_visible():
        page.click("#open-drawer")
        expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)


def close_list(page: Page) -> None:
    if page.locator("#close-drawer").is_visible():
        page.click("#close-drawer")


def thread_action(page: Page, title: str, action: str) -> None:
    """Do `action` ('Archive', 'Unarchive', 'Delete') to the conversation `title` from its
    "…" menu; a delete is confirmed, and sent at once (the toast dismissed, not undone)."""
    page.get_by_role("button", name=f"Actions for “{title}”").click()
    page.get_by_role("menuitem", name="Delete…" if action == "Delete" else action).click()
    if action == "Delete":
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        page.get_by_role("button", name="Dismiss").click()


def chat_with(page: Page, text: str, answer: str) -> str:
    """Send `text`, wait for `answer`; the conversation's id."""
    send(page, text)
    expect(page.locator(f"{FINISHED} .text").last).to_have_text(answer)
    return str(page.evaluate("window.ganglionThread"))


def test_new_starts_a_conversation_at_a_new_url_and_archives_the_old_one(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Cats sleep a lot."), Reply("Dogs bark."))
    page = open_chat(sized, server)
    old = chat_with(page, "Tell me about cats", "Cats sleep a lot.")
    old_url = page.url
    send(page, "/new")
    page.wait_for_url(lambda url: url != old_url)
    new = page.evaluate("window.ganglionThread")
    assert new != old and page.url.endswith(f"/c/{new}")
    expect(page.locator("#welcome")).to_be_visible()
    expect(page.locator(".msg.user")).to_have_count(0)
    expect(page.locator(".msg.notice")).to_contain_text("Tell me about cats")
    expect(page.locator("#title")).to_have_text("Ganglion")
    chat_with(page, "Tell me about dogs", "Dogs bark.")
    open_list(page)
    expect(page.locator("#threads li.thread a")).to_have_text(["Tell me about dogs"])
    page.click("#show-archived")
    archived = page.locator("#threads li.thread a", has_text="Tell me about cats")
    expect(archived).to_be_visible()
    screenshot(page, f"new-archived-list-{size_of(sized)}")
    page.click("#show-archived")
    page.fill("#search", "cats")
    hits = page.locator("#results a.hit strong")
    expect(hits).to_have_text(["Tell me about cats"] * 2)  # the question and its answer
    hits.first.click()
    page.wait_for_url(f"**/c/{old}")
    expect(page.locator(".msg.user .text")).to_have_text(["Tell me about cats"])
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["Cats sleep a lot."])
    screenshot(page, f"new-old-intact-{size_of(sized)}")


def test_a_reminder_brings_a_conversation_out_of_the_archive_in_every_tab(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Stretching is good."), Reply("Time to stretch!"))
    page = open_chat(context, server)
    old = chat_with(page, "remind me to stretch", "Stretching is good.")
    send(page, "/new")
    page.wait_for_url(lambda url: old not in url)
    items = page.locator("#threads li.thread a")
    expect(page.locator("#threads li.empty")).to_be_visible()
    fire_reminder(server, old, "stretch")
    expect(items).to_have_text(["remind me to stretch"])  # no reload: told at once
    items.first.click()
    expect(page.locator(".chip")).to_have_text("Reminder: stretch")
    expect(page.locator(f"{FINISHED} .text").last).to_have_text("Time to stretch!")


def test_archives_and_deletes_reach_every_open_tab_at_once(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("one"), Reply("two"))
    first = open_chat(context, server)
    chat_with(first, "first chat", "one")
    second = open_chat(context, server)
    chat_with(second, "second chat", "two")
    watcher = open_chat(context, server)  # a third tab, on a conversation of its own
    items = watcher.locator("#threads li.thread:not([hidden]) a")
    expect(items).to_have_text(["second chat", "first chat"])
    thread_action(second, "first chat", "Archive")
    expect(items).to_have_text(["second chat"])
    thread_action(first, "second chat", "Delete")
    expect(items).to_have_count(0)
    watcher.click("#show-archived")
    expect(items).to_have_text(["first chat"])
    second.click("#show-archived")
    thread_action(second, "first chat", "Delete")  # from the archived list of another tab
    expect(items).to_have_count(0)


PAGE_HEIGHT = "() => [document.documentElement.scrollHeight, document.body.scrollHeight]"


@pytest.mark.parametrize("size", SIZES)
def test_the_page_never_scrolls_as_a_whole(
    browser: Browser, server: ServerThread, tmp_path: Path, size: str
) -> None:
    context = browser.new_context(**SIZES[size])  # type: ignore[arg-type]
    thread = "web_3103103103103103"
    seed(tmp_path / "conversation.db", thread, 120)
    page = context.new_page()
    page.goto(f"{server.web.base}/c/{thread}#token={server.web.token}")
    expect(page.locator(".msg .text").last).to_have_text("message 119")
    height = SIZES[size]["viewport"]["height"]  # type: ignore[index]
    box = page.locator("#transcript").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):  # to the end and past it, back to the start, and to the end again
        page.mouse.wheel(0, 20_000)
        page.mouse.wheel(0, -20_000)
    page.mouse.wheel(0, 20_000)
    page.evaluate("window.scrollTo(0, 10_000)")
    assert page.evaluate(PAGE_HEIGHT) == [height, height]
    assert page.evaluate("window.scrollY") == 0
    expect(page.locator("header")).to_be_in_viewport(ratio=1)
    composer = page.locator("#composer").bounding_box()
    assert composer is not None and composer["y"] + composer["height"] == height
    screenshot(page, f"page-stays-put-{size}", full_page=False)
    context.close()


def expect_running(page: Page, streamed: str) -> None:
    """`page` shows a turn running: its text so far, "writing…", Stop, and no Edit."""
    expect(page.locator(".msg.assistant.streaming .text")).to_contain_text(streamed)
    expect(page.locator("#activity-text")).to_have_text("writing…")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Edit your last message")).to_have_count(0)


def test_a_reload_or_another_tab_shows_a_running_answer_as_running(
    sized: BrowserContext, server: ServerThread
) -> None:
    words = "one two three four five six seven eight nine ten eleven twelve"
    server.fake.script(Reply(words, chunk_size=4, chunk_delay=0.4))
    page = open_chat(sized, server)
    send(page, "count slowly")
    expect(page.locator(".msg.assistant.streaming .text")).to_contain_text("one")
    other = sized.new_page()
    other.goto(page.url)
    expect_running(other, "one")
    expect(other.locator(".msg.user .text")).to_have_text(["count slowly"])
    page.reload()
    expect_running(page, "one two")
    screenshot(page, f"running-after-reload-{size_of(sized)}")
    other.get_by_role("button", name="Stop").click()
    for tab in (page, other):
        expect(tab.locator(".msg.notice .text")).to_have_text("Stopped.")
        expect(tab.locator("#activity")).to_be_hidden()
        expect(tab.locator(f"{FINISHED} .text")).to_contain_text("one two")
        expect(tab.get_by_role("button", name="Edit your last message")).to_have_count(1)


def test_a_tab_on_a_conversation_deleted_elsewhere_stops_chatting_into_it(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("noted"))
    page = open_chat(sized, server)
    chat_with(page, "a secret plan", "noted")
    other = open_chat(sized, server)
    open_list(other)
    thread_action(other, "a secret plan", "Delete")
    expect(page.locator("#banner")).to_contain_text("deleted in another tab")
    expect(page.locator("#input")).to_be_disabled()
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#attach")).to_be_disabled()
    expect(page.locator("#input")).to_have_attribute("placeholder", "This conversation was deleted")
    expect(page.locator("#threads li.thread")).to_have_count(0)
    screenshot(page, f"deleted-elsewhere-{size_of(sized)}")
    page.reload()  # its address says so too
    expect(page.locator("#banner")).to_contain_text("This conversation was deleted")
    expect(page.locator("#welcome")).to_be_hidden()
    expect(page.locator("#input")).to_be_disabled()
    assert len(server.fake.requests) == 1


def test_tools_speak_the_owners_language(sized: BrowserContext, server: ServerThread) -> None:
    server.fake.script(
        calling("set_reminder", text="stretch", kind="at", schedule="in 20m"),
        calling("shell", command="echo half done; exit 1"),
        Reply("Set, and the script failed."),
    )
    page = open_chat(sized, server)
    send(page, "remind me to stretch and run the script")
    expect(page.locator(f"{FINISHED} .text")).to_have_text("Set, and the script failed.")
    said = re.compile(r"^Reminder set for \d\d:\d\d (today|tomorrow): “stretch”$")
    for view in ("live", "restored"):
        expect(page.locator(".msg.notice .text")).to_have_text([said])
        cards = page.locator("details.tool")
        expect(cards.locator("summary .title")).to_have_text([said, "Ran echo half done; exit 1"])
        shell = cards.nth(1)
        expect(shell).to_have_class("tool exited")
        expect(shell.locator("summary .status")).to_have_text("exit status 1")
        shell.locator("summary").click()
        expect(shell.locator("pre.output")).to_have_text("half done")
        transcript = page.locator("#transcript")
        for internal in ("Kept:", "web_", "error:", "[exit code"):
            expect(transcript).not_to_contain_text(internal)
        screenshot(page, f"tools-in-words-{view}-{size_of(sized)}")
        page.reload()


def test_an_archived_conversation_opened_by_its_address_is_headed_and_marked(
    sized: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("Plants need water."))
    page = open_chat(sized, server)
    chat_with(page, "Plan the garden", "Plants need water.")
    open_list(page)
    thread_action(page, "Plan the garden", "Archive")
    expect(page.locator("#archived-tag")).to_be_visible()  # told at once
    page.reload()
    expect(page.locator("#title")).to_have_text("Plan the garden")
    expect(page.locator("#archived-tag")).to_have_text("Archived")
    open_list(page)
    current = page.locator('#threads a[aria-current="page"]')
    expect(current).to_have_text("Plan the garden")
    expect(page.locator("#show-archived")).to_have_attribute("aria-pressed", "true")
    screenshot(page, f"archived-by-address-{size_of(sized)}")


def test_retry_after_a_model_error_answers_the_message_once(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(HTTPError(500, "the model fell over"), Reply("second try works"))
    page = open_chat(context, server)
    send(page, "please answer")
    error = page.locator(".msg.error")
    expect(error).to_have_count(1)
    error.get_by_role("button", name="Retry").click()
    expect(page.locator(f"{FINISHED} .text")).to_have_text("second try works")
    expect(page.locator(".msg.user .text")).to_have_text(["please answer"])
    expect(error).to_have_count(0)
    page.reload()
    expect(page.locator(".msg.user .text")).to_have_text(["please answer"])
    expect(page.locator(f"{FINISHED} .text")).to_have_text(["second try works"])
    assert [m["content"] for m in server.fake.requests[-1]["messages"][1:]] == ["please answer"]


def test_a_message_too_long_offers_edit_and_no_retry(
    context: BrowserContext, tmp_path: Path
) -> None:
    with serve_in_thread(tmp_path, web={"max_message_bytes": 1024}) as server:
        page = open_chat(context, server)
        send(page, "too long " * 200)
        bubble = page.locator(".msg.user")
        expect(bubble).to_have_attribute("data-state", "failed")
        expect(bubble.get_by_role("button", name="Edit")).to_be_visible()
        expect(bubble.get_by_role("button", name="Retry")).to_have_count(0)


def test_a_long_message_is_folded_and_unfolds(sized: BrowserContext, server: ServerThread) -> None:
    page = open_chat(sized, server)
    long = "\n".join(f"line {n} of a pasted log" for n in range(60))
    send(page, long)
    bubble = page.locator(".msg.user")
    expect(bubble).to_have_class(re.compile(r"\bcollapsed\b"))
    unfold = bubble.get_by_role("button", name="Show more")
    expect(unfold).to_have_attribute("aria-expanded", "false")
    folded = bubble.bounding_box()
    assert folded is not None and folded["height"] < 400
    screenshot(page, f"long-folded-{size_of(sized)}", full_page=False)
    unfold.click()
    expect(bubble).not_to_have_class(re.compile(r"\bcollapsed\b"))
    expect(bubble.get_by_role("button", name="Show less")).to_have_attribute(
        "aria-expanded", "true"
    )
    unfolded = bubble.bounding_box()
    assert unfolded is not None and unfolded["height"] > 2 * folded["height"]
    send(page, "short one")
    expect(page.locator(".msg.user").last).not_to_have_class(re.compile(r"\bcollapsed\b"))


PLACEHOLDER_CONTRAST = """
(selector) => {
  const parse = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const node = document.querySelector(selector);
  const style = getComputedStyle(node, "::placeholder");
  const alpha = Number((style.color.match(/[\\d.]+/g)[3] ?? 1)) * Number(style.opacity);
  const bg = parse(getComputedStyle(node).backgroundColor);
  const fg = parse(style.color).map((c, i) => c * alpha + bg[i] * (1 - alpha));
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_placeholders_have_contrast_of_at_least_4_5(
    browser: Browser, server: ServerThread, scheme: str
) -> None:
    context = browser.new_context(color_scheme=scheme, **SIZES["desktop"])  # type: ignore[arg-type]
    page = open_chat(context, server)
    for selector in ("#input", "#search"):
        ratio = page.evaluate(PLACEHOLDER_CONTRAST, selector)
        assert ratio >= 4.5, f"{selector}: {ratio:.2f}"
    context.close()


SMALL_TARGETS = """
() => [...document.querySelectorAll("button, a.button, #threads a, input.rename, .menuitem, summary")]
  .filter((node) => node.checkVisibility() && !node.closest("#sidebar[hidden]"))
  .map((node) => [node.textContent.trim() || node.getAttribute("aria-label"), node.getBoundingClientRect()])
  .filter(([, box]) => box.width > 0 && (box.height < 44 || box.width < 44))
  .map(([name, box]) => `${name}: ${Math.round(box.width)}x${Math.round(box.height)}`)
"""


def test_every_control_on_the_phone_is_a_44px_target(
    browser: Browser, server: ServerThread
) -> None:
    context = browser.new_context(**SIZES["phone"])  # type: ignore[arg-type]
    server.fake.script(calling("shell", command="echo hi"), Reply("An answer."))
    page = open_chat(context, server)
    chat_with(page, "Plan the garden", "An answer.")
    page.locator("details.tool summary").click()
    assert page.evaluate(SMALL_TARGETS) == []
    screenshot(page, "targets-phone", full_page=False)
    open_list(page)
    page.get_by_role("button", name="Actions for “Plan the garden”").click()
    expect(page.get_by_role("menu")).to_be_visible()
    assert page.evaluate(SMALL_TARGETS) == []
    screenshot(page, "targets-phone-menu", full_page=False)
    context.close()


def test_a_conversation_is_renamed_in_place_and_deleted_with_a_confirm_and_undo(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("one"), Reply("two"))
    native: list[str] = []

    def refuse(dialog: Dialog) -> None:  # the browser's own prompt or confirm: never
        native.append(dialog.message)
        dialog.dismiss()

    page = open_chat(context, server)
    chat_with(page, "Plan the garden for spring", "one")
    page = open_chat(context, server)
    page.on("dialog", refuse)
    chat_with(page, "another chat", "two")
    row = page.locator("#threads li.thread", has_text="Plan the garden for spring")
    row.hover()
    link = row.locator("a")
    assert link.evaluate("node => node.scrollWidth <= node.clientWidth")  # not squeezed
    more = page.get_by_role("button", name="Actions for “Plan the garden for spring”")
    more.click()
    menu = page.get_by_role("menu")
    expect(menu.get_by_role("menuitem")).to_have_text(["Rename", "Archive", "Delete…"])
    archive = menu.get_by_role("menuitem", name="Archive").bounding_box()
    delete = menu.get_by_role("menuitem", name="Delete…").bounding_box()
    assert archive is not None and delete is not None
    assert delete["y"] - (archive["y"] + archive["height"]) >= 12  # set apart
    screenshot(page, "thread-menu", full_page=False)
    page.keyboard.press("Escape")
    expect(menu).to_have_count(0)
    expect(more).to_be_focused()

    more.click()
    menu.get_by_role("menuitem", name="Rename").click()
    box = page.get_by_role("textbox", name="Rename “Plan the garden for spring”")
    expect(box).to_be_focused()
    box.fill("Garden")
    box.press("Enter")
    expect(page.locator("#threads li.thread:not([hidden]) a")).to_have_text(
        ["another chat", "Garden"]
    )

    page.get_by_role("button", name="Actions for “Garden”").click()
    menu.get_by_role("menuitem", name="Delete…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("“Garden” and its messages")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    screenshot(page, "delete-confirm", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Actions for “Garden”")).to_be_focused()
    page.get_by_role("button", name="Actions for “Garden”").click()
    menu.get_by_role("menuitem", name="Delete…").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator("#threads li.thread:not([hidden]) a")).to_have_text(["another chat"])
    toast = page.get_by_role("status").filter(has_text="Deleted “Garden”.")
    expect(toast).to_be_visible()
    screenshot(page, "delete-undo", full_page=False)
    toast.get_by_role("button", name="Undo").click()
    expect(page.locator("#threads li.thread:not([hidden]) a")).to_have_text(
        ["another chat", "Garden"]
    )
    page.reload()
    expect(page.locator("#threads li.thread:not([hidden]) a")).to_have_text(
        ["another chat", "Garden"]
    )

    page.get_by_role("button", name="Actions for “Garden”").click()
    menu.get_by_role("menuitem", name="Delete…").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(toast).to_be_visible()
    expect(toast).to_be_hidden(timeout=10_000)  # the Undo had its time: gone for good
    page.reload()
    expect(page.locator("#threads li.thread:not([hidden]) a")).to_have_text(["another chat"])
    assert native == []
