"""The web chat as a person uses it, in real headless Chromium."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import BrowserContext, expect

from ganglion.messages import AddReminder
from tests.browser.conftest import free_port, open_chat, screenshot, send
from tests.support.fakellm import Reply, calling
from tests.support.web import ServerThread, serve_in_thread


def test_open_with_token_send_and_see_a_streamed_reply(
    context: BrowserContext, server: ServerThread
) -> None:
    answer = "Here is **bold** and a list:\n\n- one\n- two\n\n```python\nprint('hi')\n```"
    server.fake.script(Reply(answer, chunk_size=3, chunk_delay=0.03))
    page = open_chat(context, server)
    thread = page.evaluate("window.ganglionThread")
    assert page.url == f"{server.web.base}/c/{thread}"  # the token left the address bar
    send(page, "hello there")
    expect(page.locator(".msg.user .text")).to_have_text("hello there")
    page.wait_for_selector(".msg.assistant.streaming")  # tokens arrive before the reply ends
    reply = page.locator(".msg.assistant:not(.streaming)")
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator(".codeblock code")).to_have_text("print('hi')")
    expect(reply.locator(".codeblock button")).to_have_text("Copy")
    screenshot(page, "chat-reply")


def test_shift_enter_makes_a_new_line_and_enter_sends(
    context: BrowserContext, server: ServerThread
) -> None:
    page = open_chat(context, server)
    page.fill("#input", "line one")
    page.press("#input", "Shift+Enter")
    page.type("#input", "line two")
    assert page.input_value("#input") == "line one\nline two"
    page.press("#input", "Enter")
    expect(page.locator(".msg.user .text")).to_have_text("line one\nline two")
    expect(page.locator(".msg.assistant .text")).to_have_text("ok")


def test_two_tabs_are_separate_conversations(context: BrowserContext, server: ServerThread) -> None:
    first = open_chat(context, server)
    second = open_chat(context, server)
    assert first.evaluate("window.ganglionThread") != second.evaluate("window.ganglionThread")
    server.fake.script(Reply("first tab's answer"), Reply("second tab's answer"))
    send(first, "only in the first tab")
    expect(first.locator(".msg.assistant .text")).to_have_text("first tab's answer")
    # The second tab's own exchange comes after the first tab's on the server: once its
    # answer is shown, anything of the first tab's would have arrived before it.
    send(second, "only in the second tab")
    expect(second.locator(".msg.assistant .text")).to_have_text("second tab's answer")
    expect(second.locator(".msg .text")).to_have_text(
        ["only in the second tab", "second tab's answer"]
    )
    expect(first.locator(".msg .text")).to_have_text(
        ["only in the first tab", "first tab's answer"]
    )


def test_reload_keeps_the_conversation(context: BrowserContext, server: ServerThread) -> None:
    server.fake.script(Reply("remembered"))
    page = open_chat(context, server)
    thread = page.evaluate("window.ganglionThread")
    send(page, "remember me")
    expect(page.locator(".msg.assistant .text")).to_have_text("remembered")
    page.reload()
    page.wait_for_selector("#status.connected")
    assert page.evaluate("window.ganglionThread") == thread
    expect(page.locator(".msg.user .text")).to_have_text("remember me")
    expect(page.locator(".msg.assistant .text")).to_have_text("remembered")


def test_new_clears_the_conversation(context: BrowserContext, server: ServerThread) -> None:
    page = open_chat(context, server)
    send(page, "something old")
    expect(page.locator(".msg.assistant .text")).to_have_text("ok")
    send(page, "/new")
    expect(page.locator(".msg.notice")).to_contain_text("Started a new conversation")
    expect(page.locator(".msg.user")).to_have_count(0)
    page.reload()
    page.wait_for_selector("#status.connected")
    expect(page.locator(".msg.user")).to_have_count(0)


def test_a_reminder_is_delivered_into_the_tab(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("⏰ Time to water the plants!"))
    page = open_chat(context, server)
    thread = page.evaluate("window.ganglionThread")
    soon = datetime.now(ZoneInfo("Europe/Paris")) + timedelta(seconds=3)
    spec = soon.replace(tzinfo=None).isoformat(timespec="seconds")
    reminders = server.web.services.deps.reminders
    assert reminders is not None
    info = server.call(
        reminders.ask,
        lambda reply: AddReminder("water the plants", "at", spec, reply, thread_id=thread),
    )
    assert info.next_fire is not None
    expect(page.locator(".msg.assistant .text")).to_have_text(
        "⏰ Time to water the plants!", timeout=20_000
    )
    assert "water the plants" in server.fake.requests[-1]["messages"][-1]["content"]
    screenshot(page, "reminder")


def test_without_the_token_the_page_asks_for_it_and_shows_nothing(
    context: BrowserContext, server: ServerThread
) -> None:
    page = context.new_page()
    response = page.goto(f"{server.web.base}/")
    assert response is not None and response.status == 200  # the page holds no secret
    expect(page.locator("#signin")).to_contain_text("needs Ganglion's access token")
    expect(page.locator("#status")).to_have_text("not signed in")
    expect(page.locator("#threads li")).to_have_count(0)


def test_a_foreign_origin_cannot_open_the_websocket(
    context: BrowserContext, server: ServerThread
) -> None:
    open_chat(context, server)  # the browser holds the token, as the owner's would
    evil = context.new_page()
    ws_url = server.web.base.replace("http://", "ws://") + "/ws"
    script = (
        f"<script>const ws = new WebSocket({json.dumps(ws_url)});"
        "ws.onopen = () => { document.title = 'OPENED'; };"
        "ws.onclose = () => { if (document.title !== 'OPENED') document.title = 'REFUSED'; };"
        "</script>"
    )
    evil.route(
        "http://evil.example/", lambda route: route.fulfill(body=script, content_type="text/html")
    )
    evil.goto("http://evil.example/")
    expect(evil).to_have_title("REFUSED")


def test_script_in_a_model_reply_never_runs(context: BrowserContext, server: ServerThread) -> None:
    hostile = (
        '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> '
        "[click](javascript:window.pwned=3) **<b>bold?</b>**"
    )
    server.fake.script(Reply(hostile))
    page = open_chat(context, server)
    send(page, "say something nasty")
    reply = page.locator(".msg.assistant")
    expect(reply).to_contain_text("<script>window.pwned = 1</script>")
    # A control image put in after the reply, with a listener the page's CSP allows:
    # once its failed load is reported, the reply's own image (had it kept one) would
    # have failed and run its handler too.
    page.evaluate(
        """() => {
            const control = document.createElement("img");
            control.addEventListener("error", () => { window.control = 1; control.remove(); });
            control.src = "x";
            document.querySelector(".msg.assistant").append(control);
        }"""
    )
    page.wait_for_function("() => window.control === 1")
    assert page.evaluate("window.pwned") is None
    assert reply.locator("img, script, b").count() == 0
    assert reply.locator("a").count() == 0
    screenshot(page, "hostile-reply")


def test_phone_width_layout(browser, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = open_chat(context, server)
    send(page, "hi from a phone")
    expect(page.locator(".msg.assistant .text")).to_have_text("ok")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360
    screenshot(page, "phone")
    context.close()


def test_the_tab_reconnects_after_a_daemon_restart_without_duplicates(
    context: BrowserContext, tmp_path: Path
) -> None:
    port = free_port()
    with serve_in_thread(tmp_path, web={"port": port}) as first:
        page = open_chat(context, first)
        send(page, "before the restart")
        expect(page.locator(".msg.assistant .text")).to_have_text("ok")
    expect(page.locator("#status")).to_have_text("Disconnected")
    send(page, "typed while the daemon was down")
    with serve_in_thread(tmp_path, web={"port": port}):
        expect(page.locator("#status.connected")).to_be_visible(timeout=20_000)
        expect(page.locator(".msg.user .text")).to_have_text(
            ["before the restart", "typed while the daemon was down"], timeout=20_000
        )
        expect(page.locator(".msg.assistant .text")).to_have_text(["ok", "ok"], timeout=20_000)
        page.reload()
        page.wait_for_selector("#status.connected")
        expect(page.locator(".msg.user")).to_have_count(2)
        expect(page.locator(".msg.assistant")).to_have_count(2)


def test_tool_calls_show_as_expandable_blocks_live_and_after_reload(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(
        calling("shell", command="echo hello from the shell"),
        calling("read_file", path="missing.txt"),
        Reply("The shell said hello; the file is missing."),
    )
    page = open_chat(context, server)
    send(page, "run something")
    expect(page.locator(".msg.assistant .text")).to_have_text(
        "The shell said hello; the file is missing."
    )
    for view in ("live", "restored"):
        blocks = page.locator("details.tool")
        expect(blocks).to_have_count(2)
        expect(blocks.nth(0).locator("summary")).to_have_text("Ran echo hello from the shell")
        expect(blocks.nth(1)).to_have_class("tool failed")
        expect(blocks.nth(1).locator("summary")).to_have_text("Used read_file failed")
        blocks.nth(0).locator("summary").click()
        expect(blocks.nth(0).locator("pre.output")).to_have_text("hello from the shell")
        screenshot(page, f"tool-blocks-{view}")
        if view == "live":
            page.reload()
            page.wait_for_selector("#status.connected")
