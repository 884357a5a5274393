"""A real `ganglion run` process, for tests that kill it, restart it or attack it from
outside: the daemon as a user runs it, with the scripted fake model on loopback.

    async with open_live_daemon(tmp_path, fake_llm.base_url, tools={...}) as live:
        async with live.socket() as ws:
            await hello(ws, thread_id)
            await send(ws, "hi")
            ...
        live.kill()             # SIGKILL, no drain
        await live.start()      # same config and data directory
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import trio
import yaml
from trio_websocket import WebSocketConnection, open_websocket_url

from ganglion.web import frames
from tests.support.daemon import TRUSTING, merge_settings

__all__ = ["LiveDaemon", "free_port", "open_live_daemon"]

START_TIMEOUT = 30.0
TURN_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LiveDaemon:
    """One `ganglion run` subprocess at a time, started and stopped by the test."""

    def __init__(self, root: Path, config_path: Path, data_dir: Path, port: int) -> None:
        self.root = root
        self.config_path = config_path
        self.data_dir = data_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.process: trio.Process | None = None
        self.starts = 0
        self._output: IO[bytes] | None = None

    @property
    def output_path(self) -> Path:
        """What the last run wrote to stdout and stderr."""
        return self.root / f"run-{self.starts}.out"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    @property
    def token(self) -> str:
        return (self.data_dir / "web_token").read_text().strip()

    @property
    def pid(self) -> int:
        assert self.process is not None, "the daemon is not running"
        return self.process.pid

    async def start(self) -> None:
        """Start the daemon and wait until its web chat says it is ready."""
        assert self.process is None or self.process.returncode is not None
        self.starts += 1
        self._output = self.output_path.open("wb")
        self.process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ganglion", "run", "--config", str(self.config_path)],
            cwd=self.root,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        with trio.fail_after(START_TIMEOUT):
            async with httpx.AsyncClient(base_url=self.base) as client:
                while True:
                    if self.process.poll() is not None:
                        raise AssertionError(f"ganglion run exited at start:\n{self.output()}")
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no drain, nothing flushed; what is on disk is all that survives."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)

    async def wait(self) -> int:
        assert self.process is not None
        with trio.fail_after(START_TIMEOUT):
            code = await self.process.wait()
        if self._output is not None:
            self._output.close()
            self._output = None
        return code

    async def stop(self) -> int:
        """SIGTERM, and the exit status once it has drained."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait()

    async def turn(self, thread_id: str, text: str) -> list[dict[str, Any]]:
        """Say `text` in `thread_id` over the web chat, as a tab does; every frame the
        daemon sent after the history, up to the one that ends the turn (for a /command,
        its notice)."""
        command = text.startswith("/") and not text.startswith("//")
        ends = ("notice",) if command else ("reply", "failed")
        seen: list[dict[str, Any]] = []
        async with self.socket() as ws:
            await ws.send_message(frames.hello(thread_id))
            with trio.fail_after(TURN_TIMEOUT):
                while json.loads(await ws.get_message())["type"] != "history":
                    pass
                await ws.send_message(frames.send(secrets.token_hex(8), text))
                while True:
                    seen.append(json.loads(await ws.get_message()))
                    if seen[-1]["type"] in ends:
                        return seen

    @asynccontextmanager
    async def socket(self) -> AsyncIterator[WebSocketConnection]:
        headers = [
            (b"Authorization", f"Bearer {self.token}".encode()),
            (b"Origin", self.base.encode()),
        ]
        url = self.base.replace("http://", "ws://") + "/ws"
        async with open_websocket_url(url, extra_headers=headers, connect_timeout=10) as ws:
            yield ws


@asynccontextmanager
async def open_live_daemon(
    tmp_path: Path, llm_url: str, *, start: bool = True, **overrides: Any
) -> AsyncIterator[LiveDaemon]:
    """A daemon with its own `config.yaml` and data directory under `tmp_path` (the
    defaults below, deep-merged with `overrides`); killed at the end if still running."""
    root = tmp_path / "live"
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "data"
    port = free_port()
    config: dict[str, Any] = {
        "tools": TRUSTING,
        "data_dir": str(data_dir),
        "timezone": "Europe/Paris",
        "llm": {"base_url": llm_url, "model": "fake", "retries": {"attempts": 1}},
        "web": {"port": port, "generate_titles": False},  # the fake model's script is the turns'
        "heartbeat": {"enabled": False},
        "logging": {"dir": str(root / "logs")},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(merge_settings(config, overrides)))
    live = LiveDaemon(root, config_path, data_dir, port)
    try:
        if start:
            await live.start()
        yield live
    finally:
        live.kill()
        if live.process is not None:
            with trio.CancelScope(shield=True):
                await live.wait()
