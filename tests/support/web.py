"""Helpers for web tests: the daemon with its web chat on a free loopback port."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from ganglion.config import Config
from ganglion.runtime import Services
from ganglion.web import frames
from ganglion.web.server import WebState
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, open_fake_llm

T = TypeVar("T")


@dataclass
class WebDaemon:
    daemon: Daemon
    base: str  # http://127.0.0.1:PORT
    token: str

    @property
    def services(self) -> Services:
        return self.daemon.services

    @property
    def state(self) -> WebState:
        assert self.daemon.web is not None
        return self.daemon.web

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, follow_redirects=False)

    @asynccontextmanager
    async def socket(
        self, *, token: str | None = "same", origin: str | None = "same"
    ) -> AsyncIterator[WebSocketConnection]:
        """A websocket as the page opens one (an Origin, then the token in its first
        frame); with `origin=None`, as a non-browser client does (a Bearer header)."""
        headers: list[tuple[bytes, bytes]] = []
        value = self.token if token == "same" else token
        if origin is not None:
            headers.append((b"Origin", (self.base if origin == "same" else origin).encode()))
        elif value is not None:
            headers.append((b"Authorization", f"Bearer {value}".encode()))
        async with open_websocket_url(self.ws_url, extra_headers=headers, connect_timeout=10) as ws:
            if origin is not None and value is not None:
                await ws.send_message(frames.auth(value))
            yield ws


def web_config(tmp_path: Path, llm_url: str, **overrides: Any) -> Config:
    """The daemon with its web chat on a free port. Conversations are not named by the
    model (`web.generate_titles`) unless a test turns it on: the fake model's script is
    the conversation's alone."""
    web = {"enabled": True, "port": 0, "generate_titles": False, **overrides.pop("web", {})}
    return daemon_config(tmp_path, llm_url, web=web, **overrides)


@asynccontextmanager
async def open_web_daemon(config: Config) -> AsyncIterator[WebDaemon]:
    async with open_daemon(config) as daemon:
        daemon.services.router.unregister("test")  # the web interface delivers web_ threads
        daemon.services.router.register(
            "test", lambda thread_id: not thread_id.startswith("web_"), daemon.collector
        )
        assert daemon.web is not None
        base = daemon.web.binds[0]
        token = (config.data_dir / "web_token").read_text().strip()
        yield WebDaemon(daemon, base, token)


async def next_frame(ws: WebSocketConnection, *types: str) -> dict[str, Any]:
    """The next frame of one of `types` (others are skipped)."""
    with trio.fail_after(20):
        while True:
            frame: dict[str, Any] = json.loads(await ws.get_message())
            if not types or frame["type"] in types:
                return frame


async def hello(ws: WebSocketConnection, thread_id: str) -> list[dict[str, Any]]:
    await ws.send_message(frames.hello(thread_id))
    await next_frame(ws, "welcome")
    history = await next_frame(ws, "history")
    messages: list[dict[str, Any]] = history["messages"]
    return messages


async def send(ws: WebSocketConnection, text: str, message_id: str = "m1") -> None:
    await ws.send_message(frames.send(message_id, text))


class ServerThread:
    """The daemon and the fake model in a trio run of their own, on a background thread,
    for synchronous tests (hypothesis, Playwright's sync API)."""

    def __init__(self, tmp_path: Path, overrides: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.overrides = overrides
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._web: WebDaemon | None = None
        self._fake: FakeLLM | None = None

    @property
    def web(self) -> WebDaemon:
        assert self._web is not None
        return self._web

    @property
    def fake(self) -> FakeLLM:
        assert self._fake is not None
        return self._fake

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `fn(*args)` inside the daemon's trio run and return its result."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with open_fake_llm() as fake:
            self._fake = fake
            async with open_web_daemon(
                web_config(self.tmp_path, fake.base_url, **self.overrides)
            ) as web:
                self._web = web
                self.ready.set()
                await self._stop.wait()

    def stop(self) -> None:
        if self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)


@contextmanager
def serve_in_thread(tmp_path: Path, **overrides: Any) -> Iterator[ServerThread]:
    thread = ServerThread(tmp_path, overrides)
    worker = threading.Thread(target=thread.run, daemon=True)
    worker.start()
    if not thread.ready.wait(30):
        raise AssertionError("the daemon did not start within 30 s")
    if thread.error is not None:
        raise thread.error
    try:
        yield thread
    finally:
        thread.stop()
        worker.join(30)
    if thread.error is not None:
        raise thread.error
