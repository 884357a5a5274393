"""`ganglion chat`: a terminal client for the running daemon's web chat protocol.

    ganglion chat                 interactive: type messages and /commands, see replies stream
    ganglion chat -m "text"       one message; print the final reply and exit 0
    ... | ganglion chat           fed by a pipe or a file (stdin not a terminal): each line
                                  is sent once the one before it is answered, each answer
                                  printed; exit 0 at the end of the input, 1 if a turn failed

It finds the daemon's address in the config (default 127.0.0.1:8080) and its token in
GANGLION_WEB_TOKEN, the config, or the data directory's web_token file. Before the token
is sent, the connection is checked to end at a socket of the owner's
(`ganglion.peercheck`): another local user holding the port gets nothing. Exit status: 0
on success, 1 when the turn failed, 3 when the daemon is not reachable, is not the
owner's, or refused the token.

It speaks the web chat's protocol through `ganglion.web.frames`, and imports nothing of
the daemon (no pydantic, no store): it starts in a fraction of a second.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final, Literal, TextIO

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from ganglion.errors import GanglionError
from ganglion.ids import new_web_thread_id
from ganglion.peercheck import LocalDaemon, PeerError, check_daemon_socket
from ganglion.web import frames
from ganglion_actors import unwrap_group

__all__ = ["ChatError", "chat_interactive", "chat_once", "chat_piped"]

EXIT_FAILED_TURN = 1
EXIT_UNREACHABLE = 3


class ChatError(GanglionError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


CONNECT_TIMEOUT = 10.0


async def _open_checked(target: LocalDaemon) -> trio.SocketStream:
    """A TCP connection to the daemon whose far end is a socket of the owner's."""
    with trio.fail_after(CONNECT_TIMEOUT):
        stream = await trio.open_tcp_stream(target.host.strip("[]"), target.port)
    try:
        await trio.to_thread.run_sync(
            partial(check_daemon_socket, stream.socket, target.owners)  # type: ignore[arg-type]
        )
    except PeerError:
        await stream.aclose()
        raise
    return stream


async def _session(
    target: LocalDaemon, thread_id: str, body: Callable[[WebSocketConnection], Awaitable[int]]
) -> int:
    headers = [(b"Authorization", f"Bearer {target.token}".encode())]
    try:
        stream = await _open_checked(target)
    except PeerError as exc:
        raise ChatError(str(exc), EXIT_UNREACHABLE) from None
    except (OSError, trio.TooSlowError) as exc:
        raise _unreachable(target, exc) from None
    try:
        async with stream, trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await wrap_client_stream(
                    nursery, stream, target.origin, "/ws", extra_headers=headers
                )
            try:
                await ws.send_message(frames.hello(thread_id))
                return await body(ws)
            finally:
                await ws.aclose()
    except BaseExceptionGroup as group:
        # The connection's reader task runs in that nursery: its errors (a refused
        # handshake, a closed connection) come out grouped.
        failure = unwrap_group(group)
        if not isinstance(failure, Exception) or isinstance(failure, BaseExceptionGroup):
            raise
        raise _failure(target, failure) from None
    except (
        ConnectionRejected,
        HandshakeError,
        ConnectionClosed,
        OSError,
        trio.TooSlowError,
    ) as exc:
        raise _failure(target, exc) from None


def _failure(target: LocalDaemon, exc: Exception) -> ChatError:
    """What a failed session says; an error that is not a connection's is raised as it is."""
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, ConnectionRejected):
        if exc.status_code == 401:
            return ChatError(
                "the daemon refused the token (check GANGLION_WEB_TOKEN or the data dir's web_token)",
                EXIT_UNREACHABLE,
            )
        return ChatError(
            f"the daemon refused the connection (HTTP {exc.status_code})", EXIT_UNREACHABLE
        )
    if isinstance(exc, ConnectionClosed):
        return ChatError(f"the daemon closed the connection ({exc.reason})", EXIT_UNREACHABLE)
    if isinstance(exc, OSError | HandshakeError | trio.TooSlowError):
        return _unreachable(target, exc)
    raise exc


def _unreachable(target: LocalDaemon, exc: Exception) -> ChatError:
    return ChatError(
        f"cannot reach the daemon at ws://{target.origin}/ws: is `ganglion run` running? ({exc})",
        EXIT_UNREACHABLE,
    )


async def _next_frame(ws: WebSocketConnection) -> frames.ServerFrame:
    """The next frame this client knows (others are skipped)."""
    while True:
        frame = frames.parse_server_frame(await ws.get_message())
        if frame is not None:
            return frame


async def chat_once(target: LocalDaemon, text: str, out: TextIO = sys.stdout) -> int:
    """Send one message; print the final reply (or a notice, for commands)."""
    thread_id = new_web_thread_id()

    async def body(ws: WebSocketConnection) -> int:
        await ws.send_message(frames.send(secrets.token_hex(8), text))
        command = text.strip().startswith("/")
        while True:
            frame = await _next_frame(ws)
            if frame["type"] == frames.APPROVAL:
                _waiting_for_approval(frame)
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


async def chat_piped(target: LocalDaemon, out: TextIO = sys.stdout) -> int:
    """Send each line of stdin in turn, waiting for its answer (a reply, or a command's
    notice) before the next; print the answers. Exit status 0 at the end of the input, or
    `EXIT_FAILED_TURN` if any turn failed or any message was refused (the lines after it
    are still sent)."""
    thread_id = new_web_thread_id()
    stdin = trio.wrap_file(sys.stdin)

    async def body(ws: WebSocketConnection) -> int:
        status = 0
        async for line in stdin:
            text = line.rstrip("\n")
            if text.strip() and not await _exchange(ws, text, out):
                status = EXIT_FAILED_TURN
        return status

    return await _session(target, thread_id, body)


async def _exchange(ws: WebSocketConnection, text: str, out: TextIO) -> bool:
    """Send `text` and wait for its answer; print it. False when the turn failed or the
    message was refused. The frames may come in either order: a fast turn's reply (or a
    command's notice) can be on the wire before the `accepted` that names its turn."""
    message_id = secrets.token_hex(8)
    await ws.send_message(frames.send(message_id, text))
    accepted: str | None = None
    is_command = False
    notice: str | None = None
    ended: dict[str, tuple[bool, str]] = {}  # turn id -> (answered, what to print)
    while True:
        frame = await _next_frame(ws)
        if frame["type"] == frames.APPROVAL:
            _waiting_for_approval(frame)
        if frame["type"] == frames.ACCEPTED and frame["id"] == message_id:
            accepted, is_command = frame["turn_id"], frame["turn_id"] is None
        elif frame["type"] == frames.ERROR and frame["id"] == message_id:
            print(f"ganglion: {frame['message']}", file=sys.stderr)
            return False
        elif frame["type"] == frames.NOTICE and frame.get("turn_id") is None and notice is None:
            notice = frame["text"]
        elif frame["type"] == frames.REPLY:
            ended[frame["turn_id"]] = (True, frame["text"])
        elif frame["type"] == frames.FAILED:
            ended[frame["turn_id"]] = (False, f"ganglion: the turn failed: {frame['message']}")
        if is_command and notice is not None:
            print(notice, file=out, flush=True)
            return True
        if accepted is not None and accepted in ended:
            answered, shown = ended[accepted]
            print(shown, file=out if answered else sys.stderr, flush=True)
            return answered


def _waiting_for_approval(frame: frames.ApprovalFrame) -> None:
    print(
        f"ganglion: waiting for your approval of {frame['call']!r}: answer it in the web "
        "chat (this conversation), or use `ganglion chat` without input to answer here",
        file=sys.stderr,
        flush=True,
    )


# What a line answers while a question waits (`ganglion chat`, interactive).
_ANSWERS: Final[dict[str, Literal["allow", "always", "deny"]]] = {
    "yes": "allow",
    "y": "allow",
    "no": "deny",
    "n": "deny",
    "always": "always",
}


async def chat_interactive(target: LocalDaemon, out: TextIO = sys.stdout) -> int:
    """A line-based chat: each line is sent; replies stream as they arrive."""
    thread_id = new_web_thread_id()
    stdin = trio.wrap_file(sys.stdin)

    asked: list[str] = []  # the questions waiting for an answer here, oldest first

    async def show(ws: WebSocketConnection) -> None:
        while True:
            frame = await _next_frame(ws)
            if frame["type"] == frames.APPROVAL:
                asked.append(frame["approval_id"])
                always = ", always" if frame["always"] else ""
                print(
                    f"\n[approval needed: {frame['call']}]\n[answer yes, no{always}]",
                    file=out,
                    flush=True,
                )
            elif frame["type"] == frames.APPROVAL_SETTLED:
                if frame["approval_id"] in asked:
                    asked.remove(frame["approval_id"])
            elif frame["type"] == frames.DELTA:
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
                answer = _ANSWERS.get(line.strip().lower()) if asked else None
                if answer is not None:
                    await ws.send_message(frames.approve(asked[0], answer))
                elif line.strip():
                    await ws.send_message(frames.send(secrets.token_hex(8), line.rstrip("\n")))
            nursery.cancel_scope.cancel()
        return 0

    return await _session(target, thread_id, body)
