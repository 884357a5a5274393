"""Replies into rooms: from the outbox, with typing notices, never twice.

Rules:

1. A reply goes out from the store's outbox, never from the event that announced it:
   `flush(room)` sends every undelivered reply of the room, oldest first, and marks each
   one delivered only after the homeserver accepted every part of it.
2. Each part carries the transaction id `ganglion-<outbox id>[-<part>]`: a resend after a
   crash, a restart or a lost answer is recognised by the homeserver, which returns the
   event it stored the first time instead of storing a second one.
3. Sends into one room are serialised (a fair `trio.Lock` per room), so replies keep
   their order; different rooms go out concurrently.
4. Nothing is sent before the first sync of this run: until then the bot does not know
   which rooms are encrypted, and an encrypted room must never get plain text.
5. A reply the homeserver refuses for good (the bot left the room, the event is too
   large) is logged and marked delivered, so it does not block the ones after it. One
   that could not be sent (homeserver unreachable) stays in the outbox, and the next
   successful sync sends it (`needs_sweep`).
6. A file the assistant sends (an outbox entry of kind 'file') is uploaded, then sent as
   an `m.image` (PNG, JPEG, GIF, WebP) or `m.file` under its transaction id: into an
   encrypted room encrypted (`nio.crypto.attachments`: the upload is ciphertext, the key
   travels in the encrypted event), into another room plain; never plain into an
   encrypted room. A resend uploads again (an unused upload costs the homeserver a
   little) but the event is stored once (rule 2). A file gone from the inbox is logged
   and dropped.
7. The answer of a turn that took another back (an edit, a regeneration:
   `matrix.answers`) edits the first event of the earlier reply in place: an
   `m.replace` whose `m.new_content` is the new answer (a long one's further parts go
   out as new events), encrypted in an encrypted room with the relation in the clear,
   as Matrix wants for the server to aggregate it. Every reply's first event is recorded
   there, so it can be edited later, and the further events of a long one: when it is
   given again, those are redacted once the new answer is out (each redaction under the
   transaction id `ganglion-<outbox id>-r<n>`, so a resend redacts nothing twice), and
   the new answer's own further parts are new events. An edit carries its text twice
   (its fallback and `m.new_content`): it is cut to half the size of a message.
8. An answer to a message that is no longer the newest in its room (more came while it
   was answered or waited) is a rich reply to it (`m.in_reply_to`, `matrix.answers`
   rule 3), with no fallback in the body.
9. The conversation of an Element thread (`<room>/<thread root>`, `ganglion.ids`) is
   answered in that thread: every event but an edit carries the `m.thread` relation,
   with the newest message of the thread as its reply fallback (`is_falling_back`) or
   the message it answers as a rich reply. Sends into a room keep their order across
   its threads (rule 3 locks the room).
10. An approval question (`ApprovalAsked`, `matrix.questions`) goes out as an `m.text`
    under the transaction id `ganglion-q-<id>` (asked once per run: the homeserver
    keeps a resend to one event), and what came of it as an `m.notice` replying to it.
    A question still open when the bot (re)connects is asked by the sweep.

Typing notices: a turn still running after `QUIET_DELAY` shows the bot typing, renewed
every `TYPING_RENEW` seconds (each notice lasts `TYPING_TIMEOUT_MS`), and stopped when
the turn ends or fails. Read receipts (`mark_read`) go out `QUIET_DELAY` after the
message was taken, the latest per room. Command output (`Notice`) and failed turns go
out as `m.notice`, best effort: they are not in the outbox.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any, Final

import nio
import nio.crypto.attachments as attachments
import trio

from ganglion.backend import ControlsBackend
from ganglion.ids import matrix_room_of
from ganglion.images import RASTER_TYPES
from ganglion.inbox import FileInbox, InboxError
from ganglion.matrix.answers import Answers
from ganglion.matrix.crypto import KeyKeeper
from ganglion.matrix.errors import MatrixError, MatrixRequestError, MatrixUnavailable
from ganglion.matrix.http import Homeserver
from ganglion.matrix.questions import Question, Questions, question_text, settled_text
from ganglion.matrix.render import (
    MAX_CONTENT_BYTES,
    edit_content,
    in_thread,
    message_content,
    reply_content,
    split_reply,
)
from ganglion.messages import (
    ApprovalAsked,
    ApprovalSettled,
    FileSent,
    FinalReply,
    Notice,
    Outbound,
    TurnFailed,
    TurnStarted,
)
from ganglion.store import OutboxItem
from ganglion.transcript import Attachment
from ganglion_actors import Inbox

__all__ = ["TYPING_RENEW", "Outgoing", "transaction_id"]

log = logging.getLogger(__name__)

TYPING_TIMEOUT_MS: Final = 30_000
TYPING_RENEW: Final = 20.0
# A turn answered faster than this shows no typing notice, and read receipts wait this
# long (coalesced per room): both would compete with the reply for the homeserver.
QUIET_DELAY: Final = 0.5
# Refusals that a resend would only repeat.
FINAL_ERRCODES: Final = frozenset(
    {"M_FORBIDDEN", "M_TOO_LARGE", "M_NOT_FOUND", "M_BAD_JSON", "M_NOT_JSON", "M_UNKNOWN"}
)


def transaction_id(outbox_id: int, part: int) -> str:
    """The transaction id of part `part` of outbox entry `outbox_id` (rule 2)."""
    return f"ganglion-{outbox_id}" if part == 0 else f"ganglion-{outbox_id}-{part}"


class Outgoing:
    """Everything the bot sends into rooms."""

    def __init__(
        self,
        homeserver: Homeserver,
        keys: KeyKeeper,
        backend: ControlsBackend,
        synced: trio.Event,
        files: FileInbox | None = None,
        *,
        max_media_bytes: int = 25 * 1024 * 1024,
        answers: Answers | None = None,
        questions: Questions | None = None,
    ) -> None:
        self._homeserver = homeserver
        self.answers = answers if answers is not None else Answers()
        self.questions = questions if questions is not None else Questions()
        self._files = files
        self._max_media_bytes = max_media_bytes
        self._keys = keys
        self._backend = backend
        self._synced = synced
        self._locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        self._typing: dict[str, trio.CancelScope] = {}
        self._typing_shown: set[str] = (
            set()
        )  # rooms told the bot is typing, not yet told it stopped
        self._unread: dict[str, str] = {}
        self._unread_added = trio.Event()
        self.needs_sweep = True
        self.sent = 0

    @property
    def _client(self) -> Any:
        return self._homeserver.client

    async def serve(self, inbox: Inbox[Outbound]) -> None:
        """Deliver the events of `inbox` until it ends. Each event is handled in a task
        of its own (rule 3 keeps a room's order), so a slow room never holds up the
        mailbox; what is still being sent when the mailbox ends is cancelled and stays
        in the outbox."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_receipts)
            async for event in inbox:
                match event:
                    case TurnStarted(thread_id=room_id, turn_id=turn_id):
                        self.answers.started(room_id, turn_id)
                        nursery.start_soon(self._keep_typing, room_id)
                    case FinalReply(thread_id=room_id, turn_id=turn_id):
                        self.answers.ended(room_id, turn_id)
                        typing = self._stop_typing(room_id)
                        nursery.start_soon(self._end_turn, room_id, None, typing)
                    case FileSent(thread_id=room_id):
                        nursery.start_soon(self._flush_logged, room_id)
                    case TurnFailed(thread_id=room_id, turn_id=turn_id, message=message):
                        self.answers.ended(room_id, turn_id)
                        typing = self._stop_typing(room_id)
                        nursery.start_soon(self._end_turn, room_id, message, typing)
                    case Notice(thread_id=room_id, text=text, turn_id=turn_id) if (
                        self.answers.is_stopping(room_id, turn_id)
                    ):
                        assert turn_id is not None
                        self.answers.ended(room_id, turn_id)  # stopped with nothing written
                        typing = self._stop_typing(room_id)
                        nursery.start_soon(self._end_turn, room_id, text, typing)
                    case Notice(thread_id=room_id, text=text):
                        nursery.start_soon(self.notice, room_id, text)
                    case ApprovalAsked() as asked:
                        nursery.start_soon(self._ask, asked)
                    case ApprovalSettled() as settled:
                        nursery.start_soon(self._settled, settled)
                    case _:
                        pass  # streamed text and tool activity: Matrix shows the final reply
            nursery.cancel_scope.cancel()

    def mark_read(self, room_id: str, event_id: str) -> None:
        """Send a read receipt for `event_id` soon (see the module docstring)."""
        self._unread[room_id] = event_id
        self._unread_added.set()

    async def _send_receipts(self) -> None:
        while True:
            await self._unread_added.wait()
            await trio.sleep(QUIET_DELAY)
            self._unread_added = trio.Event()
            unread, self._unread = self._unread, {}
            for room_id, event_id in unread.items():
                call = nio.Api.room_read_markers(
                    self._client.access_token, room_id, event_id, event_id
                )
                try:
                    await self._homeserver.request(nio.RoomReadMarkersResponse, call, room_id)
                except MatrixError as exc:
                    log.debug("no read receipt for %s: %s", event_id, exc)

    async def sweep(self) -> None:
        """Flush the outbox of every joined room and its threads (after a
        (re)connection, rule 5), and ask the questions still open there that this run
        has not asked (rule 10)."""
        self.needs_sweep = False
        conversations = {room_id: None for room_id in self._client.rooms}
        known = [item.thread_id for item in await self._backend.undelivered()]
        for conversation in [*known, *self.answers.conversations()]:
            if matrix_room_of(conversation)[0] in self._client.rooms:
                conversations.setdefault(conversation, None)
        for conversation in conversations:
            await self._flush_logged(conversation)
            for asked in await self._backend.open_approvals(conversation):
                if not self.questions.is_asked(asked.approval_id):
                    await self._ask(asked)

    async def _ask(self, asked: ApprovalAsked) -> None:
        """Ask an approval question in its conversation (rule 10), best effort: one
        that cannot be sent now is asked by the next sweep."""
        room_id = asked.thread_id
        if not self._synced.is_set():
            self.needs_sweep = True
            return
        expires = datetime.fromtimestamp(asked.expires_at).astimezone()
        content = message_content(question_text(asked, expires))
        async with self._locks[matrix_room_of(room_id)[0]]:
            if self.questions.is_asked(asked.approval_id):
                return
            try:
                event_id = await self.send(room_id, content, f"ganglion-q-{asked.approval_id}")
            except MatrixError as exc:
                self.needs_sweep = True
                log.warning("question %s for %s waits: %s", asked.approval_id, room_id, exc)
                return
        self.questions.asked(Question(asked.approval_id, room_id, event_id, asked.call))

    async def _settled(self, settled: ApprovalSettled) -> None:
        """Say what came of a question, as a reply to the event that asked it."""
        question = self.questions.of_approval(settled.approval_id)
        if question is None or not self._synced.is_set():
            return
        text = settled_text(settled.outcome, question.call, settled.by)
        content = reply_content(question.event_id, message_content(text, msgtype="m.notice"))
        async with self._locks[matrix_room_of(question.room_id)[0]]:
            try:
                await self.send(question.room_id, content, f"ganglion-s-{settled.approval_id}")
            except MatrixError as exc:
                log.warning("the answer to %s was not told: %s", settled.approval_id, exc)

    async def flush(self, room_id: str) -> None:
        """Send the room's undelivered replies in order (rules 1, 2 and 5).

        Error handling: `MatrixUnavailable` (and other `MatrixError`s that a resend may
        cure) propagate, leaving the rest in the outbox.
        """
        if not self._synced.is_set():
            self.needs_sweep = True  # rule 4: the first sync sweeps
            return
        async with self._locks[matrix_room_of(room_id)[0]]:
            for item in await self._backend.undelivered(room_id):
                await self._deliver(room_id, item)

    async def _deliver(self, room_id: str, item: OutboxItem) -> None:
        text = str(item.payload.get("text", ""))
        try:
            if item.kind == "file":
                await self._send_file(room_id, item)
            target = self.answers.reply_target(item.turn_id) if item.kind != "file" else None
            quoted = self.answers.in_reply_to(room_id, item.turn_id) if target is None else None
            further: list[str] = []
            # An edit carries its text twice (the fallback and `m.new_content`).
            limit = MAX_CONTENT_BYTES // 2 if target is not None else MAX_CONTENT_BYTES
            for part, piece in enumerate(split_reply(text, limit) if text.strip() else []):
                content = message_content(piece)
                if part == 0 and target is not None:
                    content = edit_content(target, content)
                elif part == 0 and quoted is not None:
                    content = reply_content(quoted, content)
                event_id = await self.send(room_id, content, transaction_id(item.id, part))
                if part == 0 and item.kind != "file":
                    await self.answers.replied(room_id, item.turn_id, target or event_id)
                elif part > 0:
                    further.append(event_id)
            if item.kind != "file":
                await self.answers.sent_parts(room_id, item.turn_id, further)
            if target is not None:
                for index, old in enumerate(self.answers.replaced_parts(item.turn_id)):
                    await self._redact(room_id, old, f"ganglion-{item.id}-r{index}")
        except MatrixRequestError as exc:
            if exc.errcode not in FINAL_ERRCODES:
                raise
            log.error(
                "the reply %d for %s was refused for good and is dropped: %s", item.id, room_id, exc
            )
        await self._backend.mark_delivered([item.id])

    async def _redact(self, conversation: str, event_id: str, txn_id: str) -> None:
        """Redact the bot's `event_id` (a part of a reply given again, rule 7)."""
        room_id = matrix_room_of(conversation)[0]
        call = nio.Api.room_redact(
            self._client.access_token, room_id, event_id, txn_id, "answered again above"
        )
        await self._homeserver.request(nio.RoomRedactResponse, call, room_id)

    async def _send_file(self, room_id: str, item: OutboxItem) -> None:
        """Upload and send the file of outbox entry `item` (rule 6)."""
        sent = Attachment.from_json(item.payload["attachment"])
        room = self._client.rooms.get(matrix_room_of(room_id)[0])
        if room is None:
            raise MatrixRequestError(f"the bot is not in {room_id}", errcode="M_FORBIDDEN")
        try:
            if self._files is None:
                raise InboxError("no inbox to send from")
            data = await self._files.read(sent.path, limit=self._max_media_bytes)
        except InboxError as exc:
            log.error("the file %s for %s is not sent: %s", sent.path, room_id, exc)
            return
        image = sent.mimetype in RASTER_TYPES
        content: dict[str, Any] = {
            "msgtype": "m.image" if image else "m.file",
            "body": sent.name,
            "filename": sent.name,
            "info": {"mimetype": sent.mimetype, "size": len(data)},
        }
        if room.encrypted:
            ciphertext, keys = await trio.to_thread.run_sync(attachments.encrypt_attachment, data)
            uri = await self._homeserver.upload(ciphertext, "application/octet-stream", sent.name)
            content["file"] = {"url": uri, **keys}
        else:
            content["url"] = await self._homeserver.upload(data, sent.mimetype, sent.name)
        await self.send(room_id, content, transaction_id(item.id, 0))

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        txn_id: str,
        *,
        reader: tuple[str, str] | None = None,
    ) -> str:
        """Send one `m.room.message` into the conversation `room_id` (a room, or one of
        its threads: rule 9), encrypted when the room is (for `reader` too, a device the
        trust rule refused: `KeyKeeper.encrypt`); returns its event id."""
        conversation = room_id
        room_id, root = matrix_room_of(conversation)
        if root is not None:
            content = in_thread(root, content, self.answers.latest(conversation) or root)
        room = self._client.rooms.get(room_id)
        if room is None:
            raise MatrixRequestError(f"the bot is not in {room_id}", errcode="M_FORBIDDEN")
        event_type, body = "m.room.message", content
        if room.encrypted:
            relation = content.get("m.relates_to")
            event_type, body = await self._keys.encrypt(room_id, event_type, content, reader=reader)
            if relation is not None:
                body = {**body, "m.relates_to": relation}  # rule 7: in the clear
        call = nio.Api.room_send(self._client.access_token, room_id, event_type, body, txn_id)
        response = await self._homeserver.request(nio.RoomSendResponse, call, room_id)
        self.sent += 1
        return str(response.event_id)

    async def _flush_logged(self, room_id: str) -> None:
        try:
            await self.flush(room_id)
        except MatrixUnavailable as exc:
            self.needs_sweep = True
            log.info("replies for %s wait in the outbox: %s", room_id, exc)
        except MatrixError as exc:
            self.needs_sweep = True
            log.warning("replies for %s wait in the outbox: %s", room_id, exc)

    async def notice(self, room_id: str, text: str, reader: tuple[str, str] | None = None) -> None:
        """Send `text` as an `m.notice`, best effort (logged when it cannot be),
        readable by `reader` too (see `send`)."""
        if not self._synced.is_set():
            log.info("a notice for %s was dropped: not connected to the homeserver", room_id)
            return
        async with self._locks[matrix_room_of(room_id)[0]]:
            try:
                content = message_content(text, msgtype="m.notice")
                txn_id = f"ganglion-n-{uuid.uuid4().hex}"
                await self.send(room_id, content, txn_id, reader=reader)
            except MatrixError as exc:
                log.warning("a notice for %s was not delivered: %s", room_id, exc)

    async def _keep_typing(self, room_id: str) -> None:
        earlier = self._typing.pop(room_id, None)  # a notice shown stays shown
        if earlier is not None:
            earlier.cancel()
        with trio.CancelScope() as scope:
            self._typing[room_id] = scope
            await trio.sleep(QUIET_DELAY)
            while self._synced.is_set():
                self._typing_shown.add(room_id)
                await self._set_typing(room_id, True)
                await trio.sleep(TYPING_RENEW)
        if self._typing.get(room_id) is scope:
            del self._typing[room_id]

    def _stop_typing(self, room_id: str) -> bool:
        """Stop renewing the room's typing notice; True if one was shown (a turn answered
        within `QUIET_DELAY` showed none, and needs no notice that it stopped)."""
        scope = self._typing.pop(room_id, None)
        if scope is not None:
            scope.cancel()
        shown = room_id in self._typing_shown
        self._typing_shown.discard(room_id)
        return shown

    async def _end_turn(self, room_id: str, failure: str | None, typing: bool) -> None:
        """The reply (or the failure notice), then the typing notice off."""
        if failure is None:
            await self._flush_logged(room_id)
        else:
            await self.notice(room_id, failure)
        if typing and room_id not in self._typing:
            await self._set_typing(room_id, False)

    async def _set_typing(self, room_id: str, typing: bool) -> None:
        room_id = matrix_room_of(room_id)[0]  # a thread's typing shows in its room
        call = nio.Api.room_typing(
            self._client.access_token, room_id, self._client.user_id, typing, TYPING_TIMEOUT_MS
        )
        try:
            await self._homeserver.request(nio.RoomTypingResponse, call, room_id)
        except MatrixError as exc:
            log.debug("typing notice in %s not sent: %s", room_id, exc)
