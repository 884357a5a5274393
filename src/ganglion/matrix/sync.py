"""The sync loop: what arrives from the homeserver becomes `UserMessage`s, durably.

Rules (numbered as in `ganglion.backend`):

1. The sync token is stored only after every event of its batch that is to be answered
   was handed to `submit` and `submit` returned (the message is on disk). A kill at any
   point before that means the batch is fetched again after the restart; what was
   submitted already is recognised by its event id (the turn id is `<room>/<event id>`)
   and answered once.
2. The first sync after a restart asks for the full state (nio keeps only the token,
   not the rooms), and continues from the stored token: messages sent while the daemon
   was down are answered, nothing before them is.
3. With no stored token at all (the very first start), the timelines the server sends
   are history: nothing in them is answered. Invites are still handled.
4. In a room the bot has just joined, only what follows its own join is answered.
5. Event ids handed to `submit` are remembered (the most recent `REMEMBERED_EVENTS`),
   so an event seen twice in one run is submitted once.
6. An event that cannot be decrypted is logged with the reason and counted (in the
   interface's `MatrixStatistics`, with the syncs that completed), its keys
   are requested from the sender's devices, and decryption is tried again after each
   sync: once the keys arrive, it is answered. If they do not come within a minute,
   the room is told (`ganglion.matrix.latekeys`).
7. With a `TrustGate` (`matrix.verified_devices_only`), every event that would be
   acted on passes it before it is handed to `submit`, whatever it asks for (a
   message, a command): a refused one is not answered. This is the one door; anything
   that later makes the bot act (reactions, edits) goes through `_trusted` too. The
   users the sync names in `device_lists.changed` have their keys asked again first.
   One exception: a reaction sent in the clear (Element never encrypts reactions, so no
   reaction from Element names its device) is taken from an allowed user without the
   device check. It carries no text; all it can do is stop a turn (⏹️) or answer the
   last message again with the same text (🔁), or deny an approval question (❌). A ✅
   in the clear approves nothing (the homeserver could have made it up): the room is
   told to reply yes, no or always to the question instead, a reply being encrypted.
8. A media message is handed on with its file in the inbox, downloaded after the gate
   and before the token moves (`ganglion.matrix.intake`); one whose file cannot be had
   is answered with why, and not handed on.
9. The controls (`matrix.events` rule 5), in timeline order with the messages, through
   the gate like them: an `Edit` of the sender's own message takes its turn back and
   answers it with the new text (`rewind`, as the web chat's Edit), and its answer
   edits the earlier reply (`matrix.answers`); a `Regenerate` does the same with the
   same text; a `Stop` stops the turn at once (the thread handles it beside the turn
   it stops). An edit that cannot be answered (an older message, one from before this
   run, someone else's) is logged with why and changes nothing; an edit of a message
   still being answered stops that answer and answers the edit; of several edits of
   one message in a sync, only the latest is answered. An edit is read with what its
   original was read with (`matrix.answers` rule 4).
10. What a message is handed on as (`matrix.context`, `matrix.addressing`): in a
    group room, only what is addressed to the bot is answered, the rest from allowed
    users is kept as context for the next answer; a reply carries what it quotes; a
    message in an Element thread belongs to that thread's conversation
    (`<room>/<thread root>`), its files to that conversation's inbox.
11. The bot's own timeline events that are not state (its replies, edits, reactions,
    redactions) come back to it in every sync; it never acts on them (`matrix.events`
    rule 3). So the sync asks the homeserver to leave out everything the bot sent
    (`sync_filter`): its own reply then no longer ends the long poll, one sync and one
    parse fewer per answer. The bot's own state events are what rule 4 and nio need
    when it joins a room or refuses an invite, so some syncs ask with nothing left
    out: the first of a run, and those after the bot joined or refused a room, until
    the room shows in one (for at most `AWAITED_FOR` seconds: a room joined over
    federation shows only once its state has come). A room that shows joined in
    a sync that left the bot's events out, unknown to this run, was joined elsewhere
    (another session of the account): what its timeline holds is history, not
    answered. Whatever still comes (those syncs) is taken out of the JSON before nio
    validates, parses and decrypts it (`_without_own_echoes`).
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import nio
import trio

from ganglion.backend import ControlsBackend, SubmitError
from ganglion.config import MatrixConfig
from ganglion.ids import matrix_room_of, matrix_thread_id
from ganglion.matrix.answers import Answers
from ganglion.matrix.context import RoomContext
from ganglion.matrix.crypto import KeyKeeper
from ganglion.matrix.errors import MatrixRequestError
from ganglion.matrix.events import (
    Answer,
    Control,
    Edit,
    Incoming,
    Regenerate,
    Skip,
    Stop,
    classify_event,
    events_after_own_join,
    invite_refusal,
    is_allowed_user,
)
from ganglion.matrix.gate import TrustGate
from ganglion.matrix.http import SYNC_MARGIN, Homeserver
from ganglion.matrix.intake import MediaIntake, MediaRefused
from ganglion.matrix.latekeys import LateKeys
from ganglion.matrix.questions import Questions
from ganglion.matrix.stats import MatrixStatistics
from ganglion.matrix.trust import Sender
from ganglion.messages import UserMessage, user_turn_id
from ganglion.store import RewindReason, RewindRefused
from ganglion.transcript import Attachment
from ganglion_actors import Backoff

__all__ = ["LONG_POLL_MS", "SyncLoop", "sync_filter"]

log = logging.getLogger(__name__)

LONG_POLL_MS: Final = 30_000
CLEAR_APPROVAL: Final = (
    "That ✅ was not encrypted (Element sends reactions in the clear), so I cannot tell it "
    "came from a verified device of yours rather than from the homeserver: it approves "
    "nothing. Reply yes, no or always to the question instead."
)
REMEMBERED_EVENTS: Final = 10_000
MAX_UNDECRYPTED: Final = 200
# Lazy-loaded members would leave devices out of the Megolm key sharing; a timeline of
# 50 events covers what a person sends while the daemon restarts.
# Nothing reads typing notices, read receipts, presence or the rooms' account data:
# left out, they neither wake the long poll nor cost a sync (the bot's own read marker,
# `m.fully_read`, is room account data: it would wake its sync after every answer).
SYNC_FILTER: Final[dict[str, Any]] = {
    "room": {
        "timeline": {"limit": 50},
        "state": {"lazy_load_members": False},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
    "presence": {"types": []},
}
# How long after the bot's own join or refusal its syncs still bring its own events,
# while the room has not shown in one (rule 11).
AWAITED_FOR: Final = 600.0
SUBMIT_BACKOFF: Final = Backoff(initial=0.5, maximum=30.0)
# An edit of a message still being answered waits this long for the stopped answer.
RESTART_ATTEMPTS: Final = 20
RESTART_PAUSE: Final = 0.25
Acted = Incoming | Control
_random = random.Random()


def sync_filter(leave_out: str | None) -> dict[str, Any]:
    """The sync's filter: `SYNC_FILTER`, with the timeline events `leave_out` sent left
    out when it is given (rule 11)."""
    if leave_out is None:
        return SYNC_FILTER
    room = SYNC_FILTER["room"]
    timeline = room["timeline"] | {"not_senders": [leave_out]}
    return SYNC_FILTER | {"room": room | {"timeline": timeline}}


def _without_own_echoes(answer: Any, me: str) -> None:
    """Take out of a sync answer's joined-room timelines, in place, the events `me` sent
    that are not state events (rule 11). Any other shape is left as it came, for nio to
    judge."""
    rooms = answer.get("rooms") if isinstance(answer, dict) else None
    joined = rooms.get("join") if isinstance(rooms, dict) else None
    if not isinstance(joined, dict):
        return
    for room in joined.values():
        timeline = room.get("timeline") if isinstance(room, dict) else None
        if isinstance(timeline, dict) and isinstance(timeline.get("events"), list):
            timeline["events"] = [
                event
                for event in timeline["events"]
                if not (
                    isinstance(event, dict)
                    and event.get("sender") == me
                    and "state_key" not in event
                )
            ]


def _carries_events(response: Any, me: str) -> bool:
    """Whether a sync brought anything that must not be read twice after a restart: room
    events of others (the bot's own replies come back to it, and are ignored),
    invitations, rooms left, to-device messages, device changes. The token of a sync that
    did not is not saved (a commit fewer per sync): after a restart, the sync from the
    token before it brings only the same again."""
    rooms = response.rooms
    return bool(
        rooms.invite
        or rooms.leave
        or response.to_device_events
        or response.device_list.changed
        or response.device_list.left
        or any(
            info.state or any(getattr(e, "sender", None) != me for e in info.timeline.events)
            for info in rooms.join.values()
        )
    )


class SyncLoop:
    """Turns syncs into durable messages; see the module docstring for the rules."""

    def __init__(
        self,
        homeserver: Homeserver,
        keys: KeyKeeper,
        config: MatrixConfig,
        backend: ControlsBackend,
        synced: trio.Event,
        mark_read: Callable[[str, str], None],
        stats: MatrixStatistics | None = None,
        *,
        gate: TrustGate | None = None,
        late_keys: LateKeys | None = None,
        notify: Callable[[str, str, tuple[str, str] | None], Awaitable[None]] | None = None,
        intake: MediaIntake | None = None,
        answers: Answers | None = None,
        questions: Questions | None = None,
    ) -> None:
        self._homeserver = homeserver
        self.answers = answers if answers is not None else Answers()
        self._context = RoomContext(homeserver, config, self.answers)
        self.questions = questions if questions is not None else Questions()
        self._intake = intake
        self._gate = gate
        self._late_keys = late_keys
        self._notify = notify
        self._keys = keys
        self._config = config
        self._backend = backend
        self.stats = stats if stats is not None else MatrixStatistics()
        self.synced = synced  # set after the first sync: the rooms are known
        self._mark_read = mark_read
        self._since: str | None = None
        self._loaded = False
        self._full_state = True
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._undecrypted: list[Any] = []
        self._invites_decided: set[str] = set()
        self._joined: set[str] = set()  # the rooms the syncs of this run showed joined
        self._awaited: dict[str, float] = {}  # joined or refused: until when it may show
        self._media_notices: list[tuple[str, str]] = []
        self._answer_notices: list[tuple[str, str]] = []

    @property
    def _client(self) -> Any:
        return self._homeserver.client

    async def sync_once(self, timeout_ms: int = LONG_POLL_MS) -> None:
        """One sync and everything it calls for. Raises `MatrixError` when the homeserver
        cannot be asked; what was received stays unanswered and the token unchanged."""
        if not self._loaded:
            self._since = self._client.store.load_sync_token() or None
            self._loaded = True
        first = self._since is None
        own = self._client.user_id
        leave_out = not (first or self._full_state or self._awaited)
        call = nio.Api.sync(
            self._client.access_token,
            since=self._since,
            timeout=0 if first or self._full_state else timeout_ms,
            filter=sync_filter(own if leave_out else None),
            full_state=True if self._full_state and not first else None,
        )
        response = await self._homeserver.request(
            nio.SyncResponse,
            call,
            read_timeout=timeout_ms / 1000 + SYNC_MARGIN,
            trim=lambda answer: _without_own_echoes(answer, own),
        )
        if self._gate is not None:
            self._gate.devices_changed(response.device_list.changed)
        joined_elsewhere = self._joined_elsewhere(response, leave_out)
        candidates = [] if first else self._incoming(response, joined_elsewhere)
        if first:
            log.info("first sync: the history of the rooms the bot is in is not answered")
        candidates += self._decrypted_late()
        incoming = await self._trusted(candidates)
        await self._submit_all(incoming)
        self._since = response.next_batch
        if first or _carries_events(response, self._client.user_id):
            self._client.store.save_sync_token(response.next_batch)
        self._note_rooms(response)
        self._full_state = False
        self.synced.set()
        await self._send_notices()
        await self._decide_invites()
        await self._keys.after_sync()
        await self._request_missing_keys()
        self.stats.synced(
            joined_rooms=len(self._client.rooms),
            one_time_keys=self._client.olm.uploaded_key_count,
        )
        for message in incoming:
            self._mark_read(message.room_id, message.event_id)

    def _joined_elsewhere(self, response: Any, left_out: bool) -> set[str]:
        """The rooms `response` shows joined that this run did not know, when it
        `left_out` the bot's own events (rule 11)."""
        if not left_out:
            return set()
        new = set(response.rooms.join) - self._joined
        for room_id in new:
            log.info(
                "%s was joined elsewhere (another session of the bot's account): its "
                "timeline is history, not answered",
                room_id,
            )
        return new

    def _note_rooms(self, response: Any) -> None:
        """Once `response` is taken in: the rooms it shows joined and left, and the
        joins and refusals it showed (rule 11)."""
        rooms = response.rooms
        self._joined = (self._joined | set(rooms.join)) - set(rooms.leave)
        now = trio.current_time()
        for room_id, until in [*self._awaited.items()]:
            if room_id in rooms.join or room_id in rooms.leave:
                del self._awaited[room_id]
            elif now >= until:
                del self._awaited[room_id]
                log.warning(
                    "%s did not show in the syncs of %.0f s after the bot joined or left it",
                    room_id,
                    AWAITED_FOR,
                )

    def _incoming(self, response: Any, history: set[str]) -> list[tuple[Acted, Sender]]:
        found: list[tuple[Acted, Sender]] = []
        own = self._client.user_id
        for room_id, info in response.rooms.join.items():
            if room_id in history:
                continue
            sources = [(getattr(e, "source", None) or {}, e) for e in info.timeline.events]
            after_join = events_after_own_join(own, [source for source, _ in sources])
            for source, event in sources[len(sources) - len(after_join) :]:
                if isinstance(event, nio.MegolmEvent):
                    self._undecryptable(room_id, event)
                    continue
                decision = classify_event(self._config, own, room_id, source)
                if not isinstance(decision, Skip):
                    found.append((decision, self._sender(room_id, event)))
                elif decision.reason.startswith("malformed"):
                    self.stats.skipped += 1
                    log.info(
                        "ignored an event from %s in %s (%s): %s",
                        source.get("sender"),
                        room_id,
                        source.get("event_id"),
                        decision.reason,
                    )
                else:
                    self.stats.skipped += 1
                    log.debug(
                        "not answering %s in %s: %s",
                        source.get("event_id"),
                        room_id,
                        decision.reason,
                    )
        return found

    def _undecryptable(self, room_id: str, event: Any) -> None:
        if event.sender == self._client.user_id or not is_allowed_user(self._config, event.sender):
            return
        self.stats.undecryptable += 1
        log.warning(
            "cannot decrypt %s in %s from %s (device %s): the Megolm session %s is unknown "
            "to this device; asking the sending device and the bot's other devices for it",
            event.event_id,
            room_id,
            event.sender,
            event.device_id,
            event.session_id,
        )
        event.room_id = room_id
        self._undecrypted = [*self._undecrypted, event][-MAX_UNDECRYPTED:]
        if self._late_keys is not None:
            device = event.device_id or event.sender_key
            self._late_keys.waiting(event.event_id, room_id, event.sender, device)

    def _sender(self, room_id: str, event: Any) -> Sender:
        """The device that sent `event`, as far as its decryption shows it: the room key
        it was decrypted with is bound to the sending device's Curve25519 key."""
        sender_key = getattr(event, "sender_key", None)
        if not getattr(event, "decrypted", False) or not isinstance(sender_key, str):
            return Sender(event.sender, None)
        session = self._client.olm.inbound_group_store.get(room_id, sender_key, event.session_id)
        ed25519 = getattr(session, "ed25519", None)
        return Sender(event.sender, sender_key, ed25519 if isinstance(ed25519, str) else None)

    async def _trusted(self, candidates: Sequence[tuple[Acted, Sender]]) -> list[Acted]:
        """The candidates whose sending device passes the gate (rule 7)."""
        if self._gate is None:
            return [message for message, _ in candidates]
        passed: list[Acted] = []
        for message, sender in candidates:
            if message.event_id in self._handled:
                continue
            if isinstance(message, Answer) and message.text is None and sender.curve25519 is None:
                if message.answer == "deny":
                    passed.append(message)  # ❌ in the clear: a denial runs nothing
                else:
                    self._answer_notices.append((message.room_id, CLEAR_APPROVAL))
                continue
            if _is_reaction(message) and sender.curve25519 is None:
                passed.append(message)  # Element sends reactions in the clear (rule 7)
            elif (await self._gate.check(message.room_id, sender)).trusted:
                passed.append(message)
        return passed

    async def _send_notices(self) -> None:
        """The trust rule's notices and the replies to files that could not be had."""
        notices: list[tuple[str, str, tuple[str, str] | None]] = [
            (room_id, text, None) for room_id, text in self._media_notices + self._answer_notices
        ]
        self._media_notices, self._answer_notices = [], []
        if self._gate is not None:
            notices += self._gate.notices
            self._gate.notices = []
        for room_id, text, reader in notices:
            if self._notify is not None:
                await self._notify(room_id, text, reader)

    def _decrypted_late(self) -> list[tuple[Acted, Sender]]:
        found: list[tuple[Acted, Sender]] = []
        pending: list[Any] = []
        for event in self._undecrypted:
            try:
                decrypted = self._client.decrypt_event(event)
            except nio.EncryptionError:
                pending.append(event)
                continue
            self.stats.decrypted_late += 1
            if self._late_keys is not None:
                self._late_keys.arrived(event.event_id)
            source: Mapping[str, Any] = getattr(decrypted, "source", None) or {}
            decision = classify_event(self._config, self._client.user_id, event.room_id, source)
            if not isinstance(decision, Skip):
                log.info("decrypted %s once its keys arrived", event.event_id)
                found.append((decision, self._sender(event.room_id, decrypted)))
        self._undecrypted = pending
        return found

    async def _request_missing_keys(self) -> None:
        for event in self._undecrypted:
            try:
                await self._keys.request_room_key(event)
            except MatrixRequestError as exc:
                log.warning("could not request the keys of %s: %s", event.event_id, exc)

    async def _submit_all(self, incoming: Sequence[Acted]) -> None:
        latest_edits = {a.original: a.event_id for a in incoming if isinstance(a, Edit)}
        for acted in incoming:
            if acted.event_id in self._handled:
                continue
            if isinstance(acted, Edit) and latest_edits[acted.original] != acted.event_id:
                log.info("not answering the edit %s: a later edit follows", acted.event_id)
                self._handled[acted.event_id] = None
                continue
            match acted:
                case Incoming() as message:
                    await self._hand_on(message)
                case Stop() as stop:
                    await self._stop(stop)
                case Edit() | Regenerate() as control:
                    await self._answer_again(control)
                case Answer() as answer:
                    await self._approve(answer)
            self._handled[acted.event_id] = None
            while len(self._handled) > REMEMBERED_EVENTS:
                self._handled.popitem(last=False)

    async def _hand_on(self, message: Incoming) -> None:
        """Submit `message` with what the model reads with it (`matrix.context`), or
        keep it as context when it is not for the bot (rule 10)."""
        prepared = await self._context.prepare(message)
        if prepared is None:
            self.stats.skipped += 1
            return
        attachments = await self._media(message)
        if attachments is not None:
            await self._submit(message, prepared.text, attachments)
            conversation = message.conversation
            turn_id = user_turn_id(conversation, message.event_id)
            await self.answers.asked(conversation, message.event_id, message.sender, turn_id)
            await self._context.handed_on(message, prepared)
        self.stats.submitted += 1

    async def _stop(self, stop: Stop) -> None:
        room_id = matrix_thread_id(stop.room_id, stop.thread_root)
        if stop.target is None:
            turn_id = self.answers.running(room_id)
        else:
            asked = self.answers.message(stop.target)
            turn_id = asked.turn_id if asked is not None else None
            room_id = asked.room_id if asked is not None else room_id
        if turn_id is None:
            log.info("%s in %s: no turn of this run to stop", stop.event_id, room_id)
            return
        log.info("%s stops %s in %s", stop.sender, turn_id, room_id)
        self.answers.stopping(turn_id)
        await self._backend.stop(room_id, turn_id)

    async def _approve(self, answer: Answer) -> None:
        """Answer the approval question the event `answer.target` asked; a reply to
        anything else is an ordinary message."""
        question = self.questions.of_event(answer.target)
        if question is None or matrix_room_of(question.room_id)[0] != answer.room_id:
            room_id = answer.room_id
            if answer.message is not None:
                await self._submit_all([answer.message])
            else:
                log.info("%s in %s answers no question of this run", answer.event_id, room_id)
            return
        room_id = question.room_id  # the conversation it was asked in: a room, or a thread
        result = await self._backend.decide_approval(
            room_id, question.approval_id, answer.answer, answer.sender
        )
        log.info(
            "%s answered %s in %s: %s", answer.sender, question.approval_id, room_id, result.text
        )
        if not result.settled and self._notify is not None:
            await self._notify(room_id, result.text, None)

    async def _answer_again(self, control: Edit | Regenerate) -> None:
        """Take the turn of an edited message, or of a reply to regenerate, back and
        answer it again (rule 9)."""
        room_id = control.room_id
        if isinstance(control, Edit):
            original: str | None = control.original
            asked = self.answers.message(control.original)
            text: str | None = control.text
        else:
            found = self.answers.message_of_reply(control.target)
            original, asked = found if found is not None else (None, None)
            text = None
        what = "edit" if text is not None else "regenerate"
        if original is None or asked is None or matrix_room_of(asked.room_id)[0] != room_id:
            log.info("not answering the %s %s: not a message of this run", what, control.event_id)
            return
        if isinstance(control, Edit) and asked.sender != control.sender:
            log.info("not answering the edit %s: only its sender may edit it", control.event_id)
            return
        if text is not None:
            text = self.answers.preamble(original) + text  # read as the original was
        room_id = asked.room_id  # the conversation: the room, or one of its threads
        new_turn = user_turn_id(room_id, control.event_id)
        if asked.turn_id == new_turn:  # seen again after a restart: taken already
            log.info("the %s %s was taken already", what, control.event_id)
            return
        await self.answers.replacing(room_id, new_turn, asked.turn_id)
        if await self._rewind(room_id, asked.turn_id, control.event_id, text, what):
            await self.answers.rewound(original, new_turn)

    async def _rewind(
        self, room_id: str, turn_id: str, message_id: str, text: str | None, what: str
    ) -> bool:
        for attempt in range(RESTART_ATTEMPTS):
            try:
                await self._backend.rewind(room_id, turn_id, message_id, text)
                return True
            except RewindRefused as exc:
                if exc.reason is not RewindReason.BUSY or attempt == RESTART_ATTEMPTS - 1:
                    log.info("not answering the %s %s: %s", what, message_id, exc)
                    return False
            except SubmitError as exc:
                log.warning("the %s %s was not taken: %s", what, message_id, exc)
                return False
            if attempt == 0:
                self.answers.stopping(turn_id)
                await self._backend.stop(room_id, turn_id)  # restarted, not queued behind
            await trio.sleep(RESTART_PAUSE)
        return False

    async def _media(self, message: Incoming) -> tuple[Attachment, ...] | None:
        """The files of `message` kept in the inbox (rule 8); None when its file cannot
        be had (its sender is told why)."""
        problem = message.problem
        if problem is not None:
            problem = f"I could not take your file: {problem}. Please send it again."
        elif message.media is not None:
            if self._intake is None:
                problem = "I take no files here."
            else:
                try:
                    kept = await self._intake.receive(message.conversation, message.media)
                except MediaRefused as exc:
                    problem = str(exc)
                else:
                    self.stats.media_received += 1
                    return (kept,)
        if problem is None:
            return ()
        self.stats.media_refused += 1
        log.warning(
            "a file from %s in %s was not taken: %s", message.sender, message.room_id, problem
        )
        # Told after the sync, as the trust rule's notices are: nothing is sent before
        # the first sync of a run has said which rooms are encrypted.
        self._media_notices.append((message.room_id, problem))
        return None

    async def _submit(
        self, message: Incoming, text: str, attachments: tuple[Attachment, ...]
    ) -> None:
        """Hand one message to its conversation as `text`, retrying with backoff until
        it is durable: the sync token must not move past a message that is not."""
        attempt = 0
        while True:
            try:
                await self._backend.submit(
                    UserMessage(
                        message.conversation,
                        "matrix",
                        text,
                        sender=message.sender,
                        message_id=message.event_id,
                        attachments=attachments,
                    )
                )
                return
            except SubmitError as exc:
                delay = SUBMIT_BACKOFF.delay(attempt, _random)
                log.warning("%s; trying again in %.1f s", exc, delay)
                attempt += 1
                await trio.sleep(delay)

    async def _decide_invites(self) -> None:
        """Join or refuse each pending invite. nio keeps an invite until the room is
        joined, so a join that failed is tried again after the next sync."""
        for room_id, room in list(self._client.invited_rooms.items()):
            if room_id in self._invites_decided:
                continue
            refusal = invite_refusal(self._config, room_id, room.inviter)
            token = self._client.access_token
            try:
                if refusal is None:
                    method, path = nio.Api.join(token, room_id)
                    await self._homeserver.request(nio.JoinResponse, (method, path, "{}"))
                    self.stats.invites_accepted += 1
                    log.info("joined %s on the invite of %s", room_id, room.inviter)
                    self._awaited[room_id] = trio.current_time() + AWAITED_FOR
                else:
                    method, path = nio.Api.room_leave(token, room_id)
                    await self._homeserver.request(nio.RoomLeaveResponse, (method, path, "{}"))
                    self.stats.invites_refused += 1
                    log.warning("refused the invite into %s: %s", room_id, refusal)
                    self._awaited[room_id] = trio.current_time() + AWAITED_FOR
            except MatrixRequestError as exc:
                log.warning("could not answer the invite into %s: %s", room_id, exc)
                continue
            self._invites_decided.add(room_id)


def _is_reaction(acted: Acted) -> bool:
    """A control that only a reaction makes (⏹️ on a message, 🔁)."""
    return isinstance(acted, Regenerate) or (isinstance(acted, Stop) and acted.target is not None)
