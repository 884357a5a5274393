"""`ganglion chat`: a terminal client for the running daemon's web chat protocol.

    ganglion chat                 interactive: type messages and /commands, see replies stream
    ganglion chat -m "text"       one message; print the final reply and exit 0

It finds the daemon's address in the config (default 127.0.0.1:8080) and its token in
GANGLION_WEB_TOKEN, the config, or the data directory's web_token file. Exit status: 0
on success, 1 when the turn failed, 3 when the daemon is not reachable or refused the
token.

It speaks the web chat's protocol through `ganglion.web.frames`, and imports nothing of
the daemon (no pydantic, no store): it starts in a fraction of a second.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ganglion.errors import GanglionError
from ganglion.threads.ids import new_web_thread_id
from ganglion.web import frames

__all__ = ["ChatError", "ChatTarget", "chat_interactive", "chat_once"]

EXIT_FAILED_TURN = 1
EXIT_UNREACHABLE = 3


class ChatError(GanglionError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ChatTarget:
    url: str  # ws://host:port/ws
    token: str


async def _session(
    target: ChatTarget, thread_id: str, body: Callable[[WebSocketConnection], Awaitable[int]]
) -> int:
    headers = [(b"Authorization", f"Bearer {target.token}".encode())]
    try:
        async with open_websocket_url(target.url, extra_headers=headers, connect_timeout=10) as ws:
            await ws.send_message(frames.hello(thread_id))
            return await body(ws)
    except ConnectionRejected as exc:
        if exc.status_code == 401:
            raise ChatError(
                "the daemon refused the token (check GANGLION_WEB_TOKEN or the data dir's web_token)",
                EXIT_UNREACHABLE,
            ) from None
        raise ChatError(
            f"the daemon refused the connection (HTTP {exc.status_code})", EXIT_UNREACHABLE
        ) from None
    except (OSError, HandshakeError, trio.TooSlowError) as exc:
        raise ChatError(
            f"cannot reach the daemon at {target.url}: is `ganglion run` running? ({exc})",
            EXIT_UNREACHABLE,
        ) from None
    except ConnectionClosed as exc:
        raise ChatError(
            f"the daemon closed the connection ({exc.reason})", EXIT_UNREACHABLE
        ) from None


async def _next_frame(ws: WebSocketConnection) -> frames.ServerFrame:
    """The next frame this client knows (others are skipped)."""
    while True:
        frame = frames.parse_server_frame(await ws.get_message())
        if frame is not None:
            return frame


async def chat_once(target: ChatTarget, text: str, out: TextIO = sys.stdout) -> int:
    """Send one message; print the final reply (or a notice, for commands)."""
    thread_id = new_web_thread_id()

    async def body(ws: WebSocketConnection) -> int:
        await ws.send_message(frames.send(secrets.token_hex(8), text))
        command = text.strip().startswith("/")
        while True:
            frame = await _next_frame(ws)
            if frame["type"] == frames.REPLY:
                print(frame["text"], file=out)
                return 0
            if frame["type"] == frames.NOTICE and command:
                print(frame["text"], file=out)
                return 0
            if frame["type"] == frames.FAILED:
                print(f"ganglion: the turn failed: {frame['message']}", file=sys.stderr)
                return EXIT_FAILED_TURN
            if frame["type"] == frames.ERROR:
                print(f"ganglion: {frame['message']}", file=sys.stderr)
                return EXIT_FAILED_TURN

    return await _session(target, thread_id, body)


async def chat_interactive(target: ChatTarget, out: TextIO = sys.stdout) -> int:
    """A line-based chat: each line is sent; replies stream as they arrive."""
    thread_id = new_web_thread_id()
    stdin = trio.wrap_file(sys.stdin)

    async def show(ws: WebSocketConnection) -> None:
        while True:
            frame = await _next_frame(ws)
            if frame["type"] == frames.DELTA:
                out.write(frame["text"])
                out.flush()
            elif frame["type"] == frames.TOOL:
                if frame["phase"] == "start":
                    print(f"\n[running {frame['tool']}…]", file=out, flush=True)
            elif frame["type"] == frames.REPLY:
                print("\n", file=out, flush=True)
            elif frame["type"] == frames.FAILED:
                print(f"\n[failed: {frame['message']}]\n", file=out, flush=True)
            elif frame["type"] == frames.NOTICE:
                print(f"[{frame['text']}]\n", file=out, flush=True)
            elif frame["type"] == frames.ERROR:
                print(f"[error: {frame['message']}]", file=out, flush=True)

    async def body(ws: WebSocketConnection) -> int:
        print(
            f"Connected (thread {thread_id}). Type a message, /help for commands, Ctrl-D to quit.",
            file=out,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(show, ws)
            async for line in stdin:
                if line.strip():
                    await ws.send_message(frames.send(secrets.token_hex(8), line.rstrip("\n")))
            nursery.cancel_scope.cancel()
        return 0

    return await _session(target, thread_id, body)
