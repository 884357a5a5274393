"""Issue 26 row 1, the browser side, as it was found: cookies ignore the port, so a
server another local user runs on any loopback port received the web chat's cookie
whenever the owner's browser visited it. Now the token lives in the chat origin's
localStorage (from the link's #fragment) and goes out only in the chat's own websocket."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import BrowserContext

from tests.browser.conftest import open_chat
from tests.support.web import ServerThread


class Recorder(ThreadingHTTPServer):
    """A stranger's web server on another loopback port: keeps every request it gets."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.heard: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.heard.append(f"{self.requestline}\n{self.headers}")
        body = b"<!doctype html><title>elsewhere</title><p>another port</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stranger() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()


def test_a_page_on_another_loopback_port_receives_nothing(
    context: BrowserContext, server: ServerThread, stranger: Recorder
) -> None:
    token = server.web.token
    page = open_chat(context, server)
    assert "token" not in page.url  # taken out of the address at once
    assert all(token not in cookie["value"] for cookie in context.cookies())
    for host in ("127.0.0.1", "localhost"):
        page.goto(f"http://{host}:{stranger.port}/")
        page.wait_for_selector("text=another port")
        assert page.evaluate("localStorage.getItem('ganglion.token')") is None
    assert len(stranger.heard) >= 2
    assert all(token not in request for request in stranger.heard), stranger.heard
    # Back on the chat, without the link: the browser still holds the token.
    page.goto(f"{server.web.base}/")
    page.wait_for_selector("#status.connected")


def test_a_cookie_an_older_version_left_is_deleted(
    context: BrowserContext, server: ServerThread, stranger: Recorder
) -> None:
    token = server.web.token
    context.add_cookies(
        [{"name": "ganglion_token", "value": token, "domain": "127.0.0.1", "path": "/"}]
    )
    page = open_chat(context, server)
    assert context.cookies() == []
    page.goto(f"http://127.0.0.1:{stranger.port}/")
    page.wait_for_selector("text=another port")
    assert all(token not in request for request in stranger.heard), stranger.heard


def test_without_a_valid_token_the_page_asks_for_one(
    context: BrowserContext, server: ServerThread
) -> None:
    page = context.new_page()
    page.goto(f"{server.web.base}/#token=not-the-token")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.inner_text("#status") == "not signed in"
    assert page.evaluate("localStorage.getItem('ganglion.token')") is None
    page.fill("#token-input", server.web.token)
    page.click("#signin-button")
    page.wait_for_selector("#status.connected")
    assert page.is_hidden("#signin")
    page.reload()
    page.wait_for_selector("#status.connected")
