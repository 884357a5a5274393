"""Which turn answers which room message, and which bot event shows each answer: what
an edit, a ⏹️ or a 🔁 needs to find its turn, and what an answer given again needs to
edit the earlier reply in place.

    answers = Answers()
    answers.asked(room, event_id, sender, turn_id)     # a message was handed on
    answers.started(room, turn_id) / answers.ended(room, turn_id)
    answers.replied(turn_id, reply_event_id)            # its reply's first event
    answers.sent_parts(room, turn_id, [event, ...])     # the further events of a long one
    answers.replacing(new_turn, old_turn)               # the new turn edits the old reply
    answers.rewound(original_event, new_turn)           # once the new turn is taken
    answers.reply_target(new_turn)                      # the event to `m.replace`
    answers.in_reply_to(room, turn)                     # the message to reply to
    answers.said(room, event_id, line) / answers.heard(room)   # a group room's context
    answers.keep_preamble(event_id, room, text) / answers.preamble(event_id)

Rules:

1. A message is known by the event that first said it: edits and regenerations move
   its turn on (`rewound`), never its key, so a second edit finds the latest turn.
2. An answer given again edits the event that showed the first answer (edits of an
   edit are edits of the original, as Matrix wants), so that event keeps standing for
   the message's answer.
3. An answer to a message that is no longer the newest one in its room (handed on, or
   kept as a group room's context) replies to it (`in_reply_to`), so the owner sees
   which message it answers.
4. A group room's messages that were not for the bot are kept (`said`) until the
   next message it answers there takes them in (`heard`); what the model read before
   a message's own words (`keep_preamble`: that context, a quote, who speaks) is kept
   with it, so an edit of it reads the same (`matrix.addressing`).
5. Kept in memory, capped at `REMEMBERED` messages, and on disk (`matrix.answerlog`)
   when given a log: `open` reads it back, so an edit after a restart still finds its
   turn and its reply. The running turns are not kept: a restart ends them. A fact
   that cannot be written is logged; the bot goes on answering (an edit of that
   message after a restart will not be answered).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import trio

from ganglion.matrix.addressing import SAID_KEPT
from ganglion.matrix.answerlog import AnswerLog, Fact

__all__ = ["REMEMBERED", "Answers", "Asked"]

log = logging.getLogger(__name__)

REMEMBERED: Final = 2_000


@dataclass(frozen=True, slots=True)
class Asked:
    """A message handed on: who sent it and the turn answering it now."""

    room_id: str
    sender: str
    turn_id: str


class Answers:
    """The map of one Matrix connection (see the module docstring)."""

    def __init__(self, facts: AnswerLog | None = None) -> None:
        self._log = facts
        self._messages: OrderedDict[str, Asked] = OrderedDict()
        self._reply_of: OrderedDict[str, str] = OrderedDict()  # turn -> bot event
        self._parts: dict[str, list[str]] = {}  # turn -> the further events of its reply
        self._turn_of_reply: OrderedDict[str, str] = OrderedDict()  # bot event -> turn
        self._message_of: dict[str, str] = {}  # turn -> the message's first event
        self._replaces: dict[str, str] = {}  # new turn -> the turn whose reply it edits
        self._running: dict[str, str] = {}  # room -> turn
        self._stopping: set[str] = set()
        self._newest: dict[str, str] = {}  # room -> the newest message handed on
        self._latest: dict[str, str] = {}  # room -> the newest message seen (rule 3)
        self._said: dict[str, list[tuple[str, str]]] = {}  # room -> (event, line), rule 4
        self._preambles: dict[str, str] = {}  # the message's first event -> preamble

    def close(self) -> None:
        """Close the log's connection (a later fact opens it again)."""
        if self._log is not None:
            self._log.close()

    async def open(self) -> None:
        """Read back what the log kept (rule 4)."""
        if self._log is None:
            return
        try:
            facts = await trio.to_thread.run_sync(self._log.load)
        except (OSError, sqlite3.Error):
            log.warning(
                "cannot read %s: earlier replies are not known", self._log.path, exc_info=True
            )
            return
        for fact in facts:
            self._apply(fact)

    async def asked(self, room_id: str, event_id: str, sender: str, turn_id: str) -> None:
        await self._keep(Fact("message", event_id, room_id, turn_id, sender))

    async def _keep(self, fact: Fact) -> None:
        self._apply(fact)
        if self._log is None:
            return
        try:
            await trio.to_thread.run_sync(self._log.write, fact)
        except (OSError, sqlite3.Error):
            log.warning("cannot keep %s in %s", fact, self._log.path, exc_info=True)

    def _apply(self, fact: Fact) -> None:
        match fact.kind:
            case "message":
                self._messages[fact.key] = Asked(fact.room_id, fact.extra, fact.value)
                self._messages.move_to_end(fact.key)
                self._message_of[fact.value] = fact.key
                self._newest[fact.room_id] = fact.key
                self._latest[fact.room_id] = fact.key
            case "reply":
                self._reply_of[fact.key] = fact.value
                self._turn_of_reply[fact.value] = fact.key
            case "replaces":
                self._replaces[fact.key] = fact.value
            case "parts":
                self._parts[fact.key] = [str(event_id) for event_id in json.loads(fact.value)]
                for event_id in self._parts[fact.key]:
                    self._turn_of_reply[event_id] = fact.key
            case "said":
                said = [(str(e), str(line)) for e, line in json.loads(fact.value)]
                self._said[fact.room_id] = said
                if said:
                    self._latest[fact.room_id] = said[-1][0]
            case "preamble":
                self._preambles[fact.key] = fact.value
        self._trim()

    async def said(self, room_id: str, event_id: str, line: str) -> None:
        """`line` was said in `room_id` (a conversation), not to the bot (rule 4)."""
        said = [entry for entry in self._said.get(room_id, []) if entry[0] != event_id]
        said = [*said, (event_id, line)][-SAID_KEPT:]
        await self._keep(Fact("said", room_id, room_id, json.dumps(said)))

    def said_lines(self, room_id: str) -> list[str]:
        return [line for _, line in self._said.get(room_id, [])]

    async def heard(self, room_id: str) -> None:
        """What was said in `room_id` has gone to the model (with the message answered)."""
        if self._said.get(room_id):
            await self._keep(Fact("said", room_id, room_id, "[]"))

    async def keep_preamble(self, event_id: str, room_id: str, preamble: str) -> None:
        if preamble:
            await self._keep(Fact("preamble", event_id, room_id, preamble))

    def preamble(self, event_id: str) -> str:
        """What the model read before the words of the message `event_id` (rule 4)."""
        return self._preambles.get(event_id, "")

    def conversations(self) -> list[str]:
        """The conversations (rooms and threads) a message was handed on in."""
        return list(self._newest)

    def newest(self, room_id: str) -> str | None:
        """The newest message handed on in `room_id` (a conversation), if any."""
        return self._newest.get(room_id)

    def message_of_turn(self, turn_id: str | None) -> str | None:
        """The first event of the message `turn_id` answers."""
        return self._message_of.get(turn_id) if turn_id is not None else None

    def latest(self, room_id: str) -> str | None:
        """The newest message seen in `room_id` (a conversation): handed on, or kept as
        a group room's context."""
        return self._latest.get(room_id)

    def is_newest_reply(self, room_id: str, event_id: str) -> bool:
        """Whether the bot's `event_id` answers the newest message of `room_id`."""
        found = self.message_of_reply(event_id)
        return found is not None and self._latest.get(room_id) == found[0]

    def in_reply_to(self, room_id: str, turn_id: str | None) -> str | None:
        """The message `turn_id` answers when it is no longer the room's newest (rule 3)."""
        original = self._message_of.get(turn_id) if turn_id is not None else None
        return None if original is None or self._latest.get(room_id) == original else original

    def message(self, event_id: str) -> Asked | None:
        """The message first said by `event_id`, if it was handed on (and remembered)."""
        return self._messages.get(event_id)

    def message_of_reply(self, event_id: str) -> tuple[str, Asked] | None:
        """The message (its first event, and what it is) the bot's `event_id` answers."""
        turn_id = self._turn_of_reply.get(event_id)
        original = self._message_of.get(turn_id) if turn_id is not None else None
        found = self._messages.get(original) if original is not None else None
        return None if original is None or found is None else (original, found)

    async def replacing(self, room_id: str, new_turn: str, old_turn: str) -> None:
        """`new_turn`'s reply, when there is one, edits `old_turn`'s (rule 2). Said
        before the new turn is asked for: it may be answered before the ask returns."""
        await self._keep(Fact("replaces", new_turn, room_id, old_turn))

    async def rewound(self, original: str, new_turn: str) -> None:
        """The message `original` is answered by `new_turn` now (rule 1)."""
        asked = self._messages.get(original)
        if asked is not None:
            await self._keep(Fact("message", original, asked.room_id, new_turn, asked.sender))

    def reply_target(self, turn_id: str | None) -> str | None:
        """The bot event the reply of `turn_id` replaces, if it answers a message again
        (the reply of the turn it took back, as far as that one was delivered)."""
        old_turn = self._replaces.get(turn_id) if turn_id is not None else None
        return None if old_turn is None else self._reply_of.get(old_turn)

    async def replied(self, room_id: str, turn_id: str | None, event_id: str) -> None:
        """`event_id` shows the answer of `turn_id` (the first of its events)."""
        if turn_id is not None:
            await self._keep(Fact("reply", turn_id, room_id, event_id))

    async def sent_parts(self, room_id: str, turn_id: str | None, event_ids: list[str]) -> None:
        """The reply of `turn_id` went on in `event_ids` (a long one is split)."""
        if turn_id is not None and (event_ids or turn_id in self._parts):
            await self._keep(Fact("parts", turn_id, room_id, json.dumps(event_ids)))

    def replaced_parts(self, turn_id: str | None) -> list[str]:
        """The further events of the reply that `turn_id`'s reply edits: an answer given
        again shows in the first event alone, these are redacted."""
        old_turn = self._replaces.get(turn_id) if turn_id is not None else None
        return list(self._parts.get(old_turn, [])) if old_turn is not None else []

    def started(self, room_id: str, turn_id: str) -> None:
        self._running[room_id] = turn_id

    def ended(self, room_id: str, turn_id: str) -> None:
        self._stopping.discard(turn_id)
        if self._running.get(room_id) == turn_id:
            del self._running[room_id]

    def stopping(self, turn_id: str) -> None:
        """The owner asked to stop `turn_id`: a stopped turn that wrote nothing ends with
        its notice alone, which then ends it here too (`is_stopping`)."""
        self._stopping.add(turn_id)

    def is_stopping(self, room_id: str, turn_id: str | None) -> bool:
        return turn_id in self._stopping and self._running.get(room_id) == turn_id

    def running(self, room_id: str) -> str | None:
        """The room's turn being answered now, if any."""
        return self._running.get(room_id)

    def _trim(self) -> None:
        while len(self._messages) > REMEMBERED:
            event_id, gone = self._messages.popitem(last=False)
            self._preambles.pop(event_id, None)
            self._message_of.pop(gone.turn_id, None)
            self._replaces.pop(gone.turn_id, None)
        while len(self._reply_of) > REMEMBERED:
            turn_id, event_id = self._reply_of.popitem(last=False)
            self._turn_of_reply.pop(event_id, None)
            for part in self._parts.pop(turn_id, []):
                self._turn_of_reply.pop(part, None)
