"""Files in the web chat as a person uses them, in real headless Chromium: attach by
button, drop and paste, the chip before sending, the upload's progress, the picture in
the history after a reload (fetched with the token, shown from a blob: URL), a file the
assistant sends, and the microphone with Chromium's fake media device."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
from playwright.sync_api import BrowserContext, FilePayload, Page, expect

from tests.browser.conftest import open_chat, screenshot
from tests.support.fakellm import Reply, calling
from tests.support.faketranscribe import FakeTranscriber, Transcript, open_fake_transcriber
from tests.support.mediafiles import pdf_bytes, png_bytes
from tests.support.web import ServerThread, serve_in_thread

MAKE_FILES = """([name, type, bytes]) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], name, { type }));
    return data;
}"""


def user_images(page: Page) -> list[dict[str, object]]:
    found: list[dict[str, object]] = page.eval_on_selector_all(
        ".msg.user .attachment.image img",
        "images => images.map(i => ({src: i.src, width: i.naturalWidth, alt: i.alt}))",
    )
    return found


def last_user_content(server: ServerThread) -> object:
    users = [m for m in server.fake.requests[-1]["messages"] if m["role"] == "user"]
    return users[-1]["content"]


def test_attach_by_button_shows_a_chip_then_the_picture_and_keeps_it_after_reload(
    context: BrowserContext, server: ServerThread
) -> None:
    server.fake.script(Reply("A yellow card."))
    page = open_chat(context, server)
    page.set_input_files(
        "#file-picker",
        files=[FilePayload(name="card.png", mimeType="image/png", buffer=png_bytes())],
    )
    chip = page.locator(".attach-chip")
    expect(chip).to_have_count(1)
    expect(chip.locator(".name")).to_contain_text("card.png")
    assert (chip.locator("img").get_attribute("src", timeout=5000) or "").startswith("blob:")
    expect(page.locator("#send")).to_be_enabled()  # a file alone may be sent
    screenshot(page, "attach-chip")
    page.fill("#input", "what is this?")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant .text")).to_have_text("A yellow card.")
    expect(page.locator(".attach-chip")).to_have_count(0)
    assert "card.png (image/png" in json.dumps(last_user_content(server))

    page.reload()
    page.wait_for_selector("#status.connected")
    expect(page.locator(".msg.user .text")).to_have_text("what is this?")
    page.wait_for_function(
        "() => document.querySelector('.msg.user .attachment.image img')?.naturalWidth > 0"
    )
    (image,) = user_images(page)
    assert str(image["src"]).startswith("blob:") and image["width"] == 64
    screenshot(page, "attach-history")


def test_a_dropped_file_and_a_pasted_picture_go_out_with_one_message(
    context: BrowserContext, server: ServerThread
) -> None:
    page = open_chat(context, server)
    dropped = page.evaluate_handle(MAKE_FILES, ["letter.pdf", "application/pdf", list(pdf_bytes())])
    page.dispatch_event("#chat", "dragover", {"dataTransfer": dropped})
    expect(page.locator("#chat.dropping")).to_have_count(1)
    page.dispatch_event("#chat", "drop", {"dataTransfer": dropped})
    pasted = page.evaluate_handle(MAKE_FILES, ["pasted.png", "image/png", list(png_bytes("p"))])
    page.evaluate(
        "data => document.getElementById('input').dispatchEvent("
        "new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}))",
        pasted,
    )
    expect(page.locator(".attach-chip")).to_have_count(2)
    page.locator("#send").click()
    expect(page.locator(".msg.assistant .text")).to_have_text("ok")
    bubble = page.locator(".msg.user")
    expect(bubble.locator(".attachment.file")).to_contain_text("letter.pdf")
    expect(bubble.locator(".attachment.image img")).to_have_count(1)
    said = json.dumps(last_user_content(server))
    assert "letter.pdf (application/pdf" in said and "pasted.png (image/png" in said


def test_a_large_upload_shows_its_progress(context: BrowserContext, server: ServerThread) -> None:
    page = open_chat(context, server)
    page.evaluate(
        "() => { window.progress = []; document.addEventListener('ganglion:upload', "
        "e => window.progress.push(e.detail.part)); }"
    )
    # Loopback takes 12 MB at once: the upload is throttled as a phone's would be.
    devtools = context.new_cdp_session(page)
    devtools.send("Network.enable")
    devtools.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4 << 20},
    )
    big = bytes(range(256)) * (12 * 1024 * 4)  # 12 MB
    page.set_input_files(
        "#file-picker",
        files=[FilePayload(name="big.bin", mimeType="application/octet-stream", buffer=big)],
    )
    page.locator("#send").click()
    expect(page.locator(".msg.assistant .text")).to_have_text("ok", timeout=30_000)
    progress: list[float] = page.evaluate("window.progress")
    assert progress[-1] == 1 and len(progress) >= 2 and min(progress) < 1
    expect(page.locator(".msg.user .attachment.file")).to_contain_text("big.bin (12.0 MB)")


def test_an_upload_over_the_cap_is_refused_and_the_chip_stays(
    context: BrowserContext, tmp_path: Path
) -> None:
    with serve_in_thread(tmp_path, web={"max_upload_bytes": 4096}) as server:
        page = open_chat(context, server)
        page.set_input_files(
            "#file-picker",
            files=[
                FilePayload(name="big.bin", mimeType="application/octet-stream", buffer=b"x" * 9000)
            ],
        )
        page.locator("#send").click()
        expect(page.locator("#banner")).to_contain_text("web.max_upload_bytes")
        expect(page.locator(".attach-chip.failed")).to_have_count(1)
        expect(page.locator(".msg.user")).to_have_count(0)


def test_a_file_the_assistant_sends_is_shown(context: BrowserContext, server: ServerThread) -> None:
    (server.tmp_path / "chart.png").write_bytes(png_bytes("chart", (80, 40)))
    server.fake.script(calling("send_file", path="chart.png"), Reply("Here is the chart."))
    page = open_chat(context, server)
    page.fill("#input", "send me the chart")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant:not(.file) .text")).to_have_text("Here is the chart.")
    page.wait_for_function(
        "() => document.querySelector('.msg.assistant.file img')?.naturalWidth === 80"
    )
    page.reload()
    page.wait_for_selector("#status.connected")
    page.wait_for_function(
        "() => document.querySelector('.msg.assistant.file img')?.naturalWidth === 80"
    )


@contextmanager
def transcriber_in_thread() -> Iterator[FakeTranscriber]:
    """The fake transcription server in a trio run of its own, on a thread."""
    ready = threading.Event()
    box: list[FakeTranscriber] = []
    stop: list[trio.Event] = []
    token: list[trio.lowlevel.TrioToken] = []

    async def serve() -> None:
        async with open_fake_transcriber() as fake:
            box.append(fake)
            stop.append(trio.Event())
            token.append(trio.lowlevel.current_trio_token())
            ready.set()
            await stop[0].wait()

    worker = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    worker.start()
    assert ready.wait(10)
    try:
        yield box[0]
    finally:
        trio.from_thread.run_sync(stop[0].set, trio_token=token[0])
        worker.join(10)


def test_the_microphone_records_a_voice_message_that_is_heard_and_quoted(
    context: BrowserContext, tmp_path: Path
) -> None:
    with transcriber_in_thread() as hearing:
        hearing.script(Transcript("what is on my calendar"))
        with serve_in_thread(tmp_path, transcription={"base_url": hearing.base_url}) as server:
            server.fake.script(Reply("Nothing today."))
            context.grant_permissions(["microphone"], origin=server.web.base)
            page = open_chat(context, server)
            microphone = page.locator("#microphone")
            expect(microphone).to_be_visible()
            microphone.click()
            expect(page.locator("#microphone.recording")).to_have_count(1)
            page.wait_for_timeout(700)
            microphone.click()
            reply = page.locator(".msg.assistant .text")
            expect(reply).to_contain_text("what is on my calendar")
            expect(reply).to_contain_text("Nothing today.")
            expect(page.locator(".msg.user .attachment.file")).to_contain_text("voice.webm")
            screenshot(page, "voice-message")
        upload = hearing.uploads[0]
        assert upload.filename == "voice.webm" and upload.content_type == "audio/webm"
        assert upload.audio[:4] == b"\x1aE\xdf\xa3"  # a WebM (Matroska) file
