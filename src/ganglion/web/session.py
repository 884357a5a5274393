"""One websocket session (a browser tab or `ganglion chat`), and the hub that fans events
out to the sessions of each thread.

A session reads frames, validates them (`protocol.parse_client_frame`), rate-limits them
with a token bucket, and hands messages to the daemon. Every send is answered once: an
`accepted` frame once it is durable, or an `error` naming its id when it was refused
(too large, over the rate limit, malformed, not stored), so a client never has to guess. Events for its thread reach it
through a bounded queue that the hub fills without ever waiting: a session too slow to
keep up is closed (its tab reconnects and gets the history again) rather than slowing
the daemon down for everyone.

A page's socket is accepted before it is authenticated (a page cannot set headers on a
websocket): its first frame must be `auth` with the token, within `AUTH_SECONDS`, or the
socket is closed with `frames.CLOSE_UNAUTHORISED` and nothing else is read.

Error handling: every refused frame, and every frame whose handling failed, is answered
with an `error` frame and the session goes on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import trio

from ganglion.backend import ConversationDeleted, LibraryBackend, SubmitError, Submitted
from ganglion.config import WebConfig
from ganglion.ids import WEB_PREFIX
from ganglion.messages import (
    FinalReply,
    Notice,
    Outbound,
    TextDelta,
    ToolActivity,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from ganglion.store import Library, RewindRefused, StoreError, ThreadSummary
from ganglion.threads.commands import parse_command
from ganglion.transcript import Attachment
from ganglion.web import frames
from ganglion.web.auth import refuse_wrong_token, token_matches
from ganglion.web.frames import ArchiveFrame, DeleteFrame, RenameFrame
from ganglion.web.protocol import (
    REWIND_ERROR_CODES,
    ClientFrame,
    FrameError,
    accepted_frame,
    error_frame,
    event_frame,
    history_frame,
    new_conversation_frame,
    parse_client_frame,
    search_frame,
    send_id,
    thread_changed_frame,
    threads_frame,
    usage_frame,
    versions_frame,
    welcome_frame,
)
from ganglion.web.uploads import UploadError, Uploads

__all__ = ["Hub", "TokenBucket", "run_session"]

log = logging.getLogger(__name__)

QUEUE_FRAMES = 1024
COALESCE_FRAMES = 256  # frames a writer takes at once, to merge the streamed text in them
HISTORY_PAGE = 200
FLOOD_CLOSE_AFTER = 200  # refused frames before the socket is closed
RATE_LIMITED = "too many messages at once; this one was not sent (slow down and retry)"
NOT_STORED = "the message could not be stored; send it again"
NOT_HANDLED = "this frame could not be handled; the session goes on"
DELETED = "this conversation was deleted; start a new one"
AUTH_SECONDS = 10.0


class TokenBucket:
    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = capacity
        self._at = trio.current_time()

    def take(self) -> bool:
        now = trio.current_time()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class _Outlet:
    """The queue of frames waiting to be written to one socket (streamed text waits as
    its event, so the writer can merge what piled up into one frame)."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[str | TextDelta](QUEUE_FRAMES)
        self.overflowed = False

    def offer(self, frame: str | TextDelta) -> bool:
        try:
            self.send.send_nowait(frame)
        except trio.WouldBlock:
            self.overflowed = True
            self.send.close()
            return False
        except trio.ClosedResourceError:
            return False
        return True


@dataclass(slots=True)
class _Running:
    """What a tab opened in the middle of a turn needs to show it running: the turn, the
    text it streamed since it began or since its last tool call (what came before that is
    in the history), and the tool it is waiting for, if any."""

    started: TurnStarted
    text: list[str] = field(default_factory=list)
    tool: ToolActivity | None = None

    def frames(self) -> list[str]:
        thread_id, turn_id = self.started.thread_id, self.started.turn_id
        shown = [event_frame(self.started)]
        if self.text:
            shown.append(event_frame(TextDelta(thread_id, turn_id, "".join(self.text))))
        if self.tool is not None:
            shown.append(event_frame(self.tool))
        return shown


class Hub:
    """The open sessions of each thread, and the turn running in each thread."""

    def __init__(self) -> None:
        self._outlets: dict[str, set[_Outlet]] = {}
        self._running: dict[str, _Running] = {}

    def add(self, thread_id: str, outlet: _Outlet) -> None:
        self._outlets.setdefault(thread_id, set()).add(outlet)

    def remove(self, thread_id: str, outlet: _Outlet) -> None:
        outlets = self._outlets.get(thread_id)
        if outlets is not None:
            outlets.discard(outlet)
            if not outlets:
                del self._outlets[thread_id]

    def publish(self, event: Outbound) -> bool:
        """Queue `event` for every session of its thread; True if one took it."""
        self._follow(event)
        frame = event if isinstance(event, TextDelta) else event_frame(event)
        delivered = False
        for outlet in list(self._outlets.get(event.thread_id, ())):
            delivered = outlet.offer(frame) or delivered
        return delivered

    def _follow(self, event: Outbound) -> None:
        # Turns run one at a time in a thread: what it emits belongs to the running one.
        running = self._running.get(event.thread_id)
        match event:
            case TurnStarted():
                self._running[event.thread_id] = _Running(event)
            case TextDelta(text=text) if running is not None:
                running.text.append(text)
            case ToolActivity(phase="start") if running is not None:
                running.tool = event
            case ToolActivity(phase="end") if running is not None:
                running.tool = None
                running.text.clear()
            case FinalReply() | TurnFailed():
                self._running.pop(event.thread_id, None)

    def running(self, thread_id: str) -> list[str]:
        """The frames that show the turn running in `thread_id` as it stands (none when
        nothing runs): for a session that joins it after the history."""
        running = self._running.get(thread_id)
        return running.frames() if running is not None else []

    def forget(self, thread_id: str) -> None:
        """A deleted thread runs nothing any more."""
        self._running.pop(thread_id, None)

    def broadcast(self, frame: str) -> None:
        """Queue `frame` for every open session, whatever thread it follows."""
        for outlets in list(self._outlets.values()):
            for outlet in list(outlets):
                outlet.offer(frame)

    def close_all(self) -> None:
        for outlets in self._outlets.values():
            for outlet in outlets:
                outlet.send.close()


async def run_session(
    socket: Any,
    backend: LibraryBackend,
    library: Library,
    hub: Hub,
    config: WebConfig,
    token: str | None = None,
    uploads: Uploads | None = None,
) -> None:
    """Serve one accepted websocket until it closes. With `token`, the socket is not yet
    authenticated: its first frame must carry that token. Sends name their files in
    `uploads` (None: files are refused)."""
    if token is not None and not await _authenticate(socket, token):
        return
    session = _Session(socket, backend, library, hub, config, uploads)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, socket, session.outlet, nursery.cancel_scope)
            await session.read()
            nursery.cancel_scope.cancel()
    finally:
        session.leave()


async def _authenticate(socket: Any, token: str) -> bool:
    """Whether the socket's first frame is `auth` with `token`; closes it if not."""
    reason = "no token: send the access token first"
    with trio.move_on_after(AUTH_SECONDS):
        raw = await socket.receive()
        try:
            frame: ClientFrame | None = parse_client_frame(raw or "")
        except FrameError:
            frame = None
        if frame is not None and frame["type"] == frames.AUTH:
            if token_matches(frame["token"], token):
                return True
            await refuse_wrong_token()
            reason = "wrong token"
    await socket.close(frames.CLOSE_UNAUTHORISED, f"unauthorised: {reason}")
    return False


async def _write(socket: Any, outlet: _Outlet, scope: trio.CancelScope) -> None:
    async with outlet.receive:
        async for first in outlet.receive:
            for frame in _coalesced(first, outlet.receive):
                await socket.send(frame)
    if outlet.overflowed:
        log.warning("closing a web session that could not keep up")
        await socket.close(1013, "too slow to keep up; reconnect to resume")
    scope.cancel()


def _coalesced(
    first: str | TextDelta, waiting: trio.MemoryReceiveChannel[str | TextDelta]
) -> list[str]:
    """`first` and the frames already waiting behind it, with each run of streamed text
    of one turn merged into one delta frame: a socket that fell behind catches up in a
    few large frames instead of many small ones (each one a system call and a wake-up of
    the browser), and one that keeps up sends each piece as it comes."""
    batch = [first]
    while len(batch) < COALESCE_FRAMES:
        try:
            batch.append(waiting.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    frames: list[str] = []
    run: list[TextDelta] = []
    for item in [*batch, None]:
        if isinstance(item, TextDelta) and (not run or run[0].turn_id == item.turn_id):
            run.append(item)
            continue
        if run:
            merged = replace(run[0], text="".join(delta.text for delta in run))
            frames.append(event_frame(merged))
            run = []
        if isinstance(item, TextDelta):
            run.append(item)
        elif item is not None:
            frames.append(item)
    return frames


class _Session:
    """One authenticated socket: what it reads, the thread it follows (None until its
    `hello`) and the queue of frames its writer sends. Conversations are read from the
    `library`; what changes one goes through the daemon (`backend`)."""

    def __init__(
        self,
        socket: Any,
        backend: LibraryBackend,
        library: Library,
        hub: Hub,
        config: WebConfig,
        uploads: Uploads | None = None,
    ) -> None:
        self.socket = socket
        self.uploads = uploads
        self.backend = backend
        self.library = library
        self.hub = hub
        self.config = config
        self.outlet = _Outlet()
        self.thread_id: str | None = None
        # The conversation followed is in no list yet: its first message stored, every
        # tab is told (`thread_changed` 'created'), as they are of a rename.
        self.unlisted = False

    def leave(self) -> None:
        if self.thread_id is not None:
            self.hub.remove(self.thread_id, self.outlet)

    def offer(self, frame: str) -> None:
        self.outlet.offer(frame)

    async def read(self) -> None:
        config = self.config
        bucket = TokenBucket(config.frame_burst, config.max_frames_per_second)
        refused = 0
        while True:
            raw = await self.socket.receive()
            if raw is None:  # quart hands over an empty frame as None
                raw = ""
            if not bucket.take():
                refused += 1
                if refused >= FLOOD_CLOSE_AFTER:
                    log.warning("closing a flooding web session")
                    await self.socket.close(1008, "too many frames")
                    return
                # A refused send is always named (its sender marks it failed); other
                # frames get one error per streak: answering every one adds to the flood.
                message_id = send_id(raw)
                if message_id is not None:
                    self.offer(error_frame("rate_limited", RATE_LIMITED, message_id))
                elif refused == 1:
                    self.offer(error_frame("rate_limited", "too many frames; slow down"))
                continue
            refused = 0
            size = len(raw.encode() if isinstance(raw, str) else raw)
            if size > config.max_message_bytes:
                self.offer(
                    error_frame(
                        "too_large",
                        f"messages are limited to {config.max_message_bytes} bytes; this "
                        f"one had {size}",
                        send_id(raw),
                    )
                )
                continue
            try:
                frame = parse_client_frame(raw)
            except FrameError as exc:
                self.offer(error_frame(exc.code, exc.message, send_id(raw)))
                continue
            try:
                await self.handle(frame)
            except Exception:  # one frame's failure must not end the session (a protocol edge)
                log.exception("a web frame of type %s could not be handled", frame["type"])
                self.offer(error_frame("internal", NOT_HANDLED, send_id_of(frame)))

    async def handle(self, frame: ClientFrame) -> None:
        if frame["type"] == frames.AUTH:
            self.offer(error_frame("bad_frame", "this session is signed in already"))
        elif frame["type"] == frames.HELLO:
            await self._hello(frame["thread_id"])
        elif frame["type"] == frames.LIST_THREADS:
            await self._list(archived=frame.get("archived", False))
        elif frame["type"] == frames.SEARCH:
            query = frame["query"]
            self.offer(search_frame(query, await self.library.search("web", query)))
        elif frame["type"] in (frames.RENAME, frames.ARCHIVE, frames.DELETE):
            try:
                await self._change(frame)
            except StoreError:
                self.offer(error_frame("unknown_thread", "there is no such conversation"))
            # Unarchiving is done from the archived list: that list is the one shown again.
            archived = frame["type"] == frames.ARCHIVE and not frame.get("archived", True)
            await self._list(archived=archived)
        elif self.thread_id is None:
            self.offer(error_frame("no_hello", "send a hello frame first", send_id_of(frame)))
        elif frame["type"] == frames.SEND and _starts_over(frame):
            await self._new_conversation(frame["id"])
        elif frame["type"] == frames.SEND:
            try:
                attachments = await self._attachments(frame.get("attachments", []))
            except UploadError as exc:
                self.offer(error_frame("bad_attachment", str(exc), frame["id"]))
                return
            message = UserMessage(
                self.thread_id,
                "web",
                frame["text"],
                message_id=frame["id"],
                attachments=attachments,
            )
            submitted = await self._submitted(frame["id"], self.backend.submit(message), "message")
            if submitted is not None and self.unlisted:
                self.unlisted = False
                self.hub.broadcast(thread_changed_frame(self.thread_id, "created"))
        elif frame["type"] == frames.STOP:
            await self.backend.stop(self.thread_id, frame["turn_id"])
        elif frame["type"] == frames.USAGE:
            self.offer(usage_frame(self.thread_id, await self.backend.usage(self.thread_id)))
        elif frame["type"] == frames.APPROVE:
            result = await self.backend.decide_approval(
                self.thread_id, frame["approval_id"], frame["answer"], "owner"
            )
            if result.settled:
                self.offer(event_frame(Notice(self.thread_id, result.text)))
            else:
                self.offer(error_frame("not_open", result.text))
        elif frame["type"] == frames.REWIND:
            rewind = self.backend.rewind(
                self.thread_id, frame["turn_id"], frame["id"], frame.get("text")
            )
            await self._submitted(frame["id"], rewind, "rewind")
        elif frame["type"] == frames.VERSIONS:
            turn_id = frame["turn_id"]
            turns = await self.backend.versions(self.thread_id, turn_id)
            self.offer(versions_frame(turn_id, turns))
        elif frame["type"] == frames.CHOOSE_VERSION:
            await self._choose_version(frame["turn_id"])
        elif frame["type"] == frames.HISTORY:
            before_id = frame["before_id"]
            page = await self.library.history_page(
                self.thread_id, before_id=before_id, limit=HISTORY_PAGE
            )
            more = len(page) == HISTORY_PAGE
            self.offer(
                await trio.to_thread.run_sync(
                    partial(history_frame, page, more=more, before_id=before_id)
                )
            )

    async def _attachments(self, refs: list[frames.AttachmentRef]) -> tuple[Attachment, ...]:
        """The files a send names, as uploaded into this conversation's inbox."""
        if not refs:
            return ()
        if self.uploads is None:
            raise UploadError("this chat takes no files")
        assert self.thread_id is not None
        return await self.uploads.resolve(self.thread_id, refs)

    async def _submitted(
        self, message_id: str, submit: Awaitable[Submitted], what: str
    ) -> Submitted | None:
        """Answer a send or a rewind: `accepted` once it is durable (and return what was
        submitted), else why not (None)."""
        try:
            submitted = await submit
        except RewindRefused as exc:
            reason = REWIND_ERROR_CODES[exc.reason]
            self.offer(error_frame(reason, exc.user_message, message_id))
        except ConversationDeleted:
            self.offer(error_frame("deleted", DELETED, message_id))
        except SubmitError:
            log.warning("a web %s could not be stored", what, exc_info=True)
            self.offer(error_frame("not_stored", NOT_STORED, message_id))
        else:
            self.offer(accepted_frame(message_id, submitted))
            return submitted
        return None

    async def _choose_version(self, turn_id: str) -> None:
        """Show another version of the last answer; every tab on it reads it again."""
        assert self.thread_id is not None
        try:
            await self.backend.choose_version(self.thread_id, turn_id)
        except RewindRefused as exc:
            self.offer(error_frame(REWIND_ERROR_CODES[exc.reason], exc.user_message))
        except ConversationDeleted:
            self.offer(error_frame("deleted", DELETED))
        except SubmitError:
            log.warning("a web choice of version could not be stored", exc_info=True)
            self.offer(error_frame("not_stored", NOT_STORED))
        else:
            self.hub.broadcast(thread_changed_frame(self.thread_id, "version"))

    async def _hello(self, thread_id: str) -> None:
        summary = await self.library.thread_summary(thread_id)
        if summary is not None and summary.deleted:
            self.offer(error_frame("deleted", DELETED))
            return
        self.leave()
        self.thread_id = thread_id
        self.unlisted = summary is None or summary.updated_at is None
        self.hub.add(thread_id, self.outlet)
        await self._welcome(thread_id, summary)

    async def _change(self, frame: RenameFrame | ArchiveFrame | DeleteFrame) -> None:
        thread_id = frame["thread_id"]
        change: frames.ThreadChange
        if frame["type"] == frames.RENAME:
            await self.backend.rename(thread_id, frame["title"])
            change = "renamed"
        elif frame["type"] == frames.ARCHIVE:
            archived = frame.get("archived", True)
            await self.backend.archive(thread_id, archived)
            change = "archived" if archived else "unarchived"
        else:
            cancelled = await self.backend.delete(thread_id)
            self.hub.forget(thread_id)
            if cancelled:
                self.offer(event_frame(Notice(thread_id, cancelled_notice(cancelled))))
            change = "deleted"
        # Every tab shows the list, and some show this conversation: all are told at once.
        self.hub.broadcast(thread_changed_frame(thread_id, change))

    async def _new_conversation(self, message_id: str) -> None:
        """`/new`: the conversation is archived as it is, and this session follows a new
        one. The new id is derived from the send's, so a send repeated after a reconnect
        lands in the same new conversation."""
        previous = self.thread_id
        assert previous is not None
        summary = await self.library.thread_summary(previous)
        if summary is not None and summary.updated_at is not None and not summary.deleted:
            await self.backend.archive(previous, True)
            self.hub.broadcast(thread_changed_frame(previous, "archived"))
            text = f"Started a new conversation. “{summary.title}” is kept under Archived."
        else:
            text = "Started a new conversation."
        digest = hashlib.sha256(f"{previous}/{message_id}".encode()).hexdigest()
        thread_id = WEB_PREFIX + digest[:16]
        self.offer(accepted_frame(message_id, Submitted(None, "done")))
        self.offer(event_frame(Notice(previous, text)))
        self.offer(new_conversation_frame(thread_id, previous, text))
        self.leave()
        self.thread_id = thread_id
        self.unlisted = True
        self.hub.add(thread_id, self.outlet)
        await self._welcome(thread_id)

    async def _list(self, *, archived: bool) -> None:
        items = await self.library.list_threads("web", archived=archived)
        self.offer(threads_frame(items, archived=archived))

    async def _welcome(self, thread_id: str, summary: ThreadSummary | None = None) -> None:
        self.offer(welcome_frame(thread_id, self.config.max_message_bytes, summary))
        # The history carries every final reply, including those made while the tab was
        # away: what was pending before it was read is delivered with it.
        pending = await self.backend.undelivered(thread_id)
        page = await self.library.history_page(thread_id, before_id=None, limit=HISTORY_PAGE)
        queued = await self.library.queued_turns(thread_id)
        more = len(page) == HISTORY_PAGE
        self.offer(
            await trio.to_thread.run_sync(partial(history_frame, page, more=more, queued=queued))
        )
        # Taken after the history, with no wait between: what streamed while the page was
        # read is in the running text, and what is in the history is not in it.
        for frame in self.hub.running(thread_id):
            self.offer(frame)
        for asked in await self.backend.open_approvals(thread_id):
            self.offer(event_frame(asked))  # a question still open is asked again
        if pending:
            # A tab that closes right after the history must not leave the marking undone.
            with trio.CancelScope(shield=True):
                await self.backend.mark_delivered([item.id for item in pending])


def _starts_over(frame: frames.SendFrame) -> bool:
    """Whether a send is `/new`: in the web chat, a new conversation beside the old one."""
    command = parse_command(frame["text"])
    return command is not None and command.name == "new" and not frame.get("attachments")


def send_id_of(frame: ClientFrame) -> str | None:
    return frame["id"] if frame["type"] in (frames.SEND, frames.REWIND) else None


def cancelled_notice(count: int) -> str:
    reminders = "reminder" if count == 1 else "reminders"
    return f"Deleted the conversation and cancelled the {count} {reminders} it had set."
