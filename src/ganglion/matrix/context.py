"""What a room message needs before it is handed on: whether it is for the bot, the
earlier events it refers to, and the room's context (`matrix.addressing` decides, this
module asks the homeserver and remembers).

    context = RoomContext(homeserver, config, answers)
    prepared = await context.prepare(message)   # None: kept as context, not answered
    ... submit prepared.text ...
    await context.handed_on(message, prepared)

Rules:

1. An event a message replies to, or its thread's root, is read from the homeserver
   (`/rooms/{room}/event/{event}`, decrypted with the room keys the bot holds), as its
   latest edit shows it (`/relations/{event}/m.replace`, from the same sender). A
   thread's root is read once, then remembered (the newest `REMEMBERED_EVENTS`): every
   message of the thread asks who wrote it. One that cannot be had (unknown,
   forbidden, undecryptable) is no quote: the message is answered without it.
2. Only the text of the bot and of allowed users is quoted (`matrix.addressing`
   rule 4); a stranger's event is never read into a prompt, even when replied to.
3. The context a message takes in is forgotten only once the message is handed on
   (`handed_on`, after `submit` returned): a kill in between shows it again with the
   resubmitted message, which its turn id makes a duplicate anyway.

Error handling: `MatrixUnavailable` while reading an event propagates (the sync is
retried, its token unchanged); a refusal is logged and read as "no event".
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import nio

from ganglion.config import MatrixConfig
from ganglion.matrix.addressing import (
    Quote,
    group_rule,
    is_addressed,
    localpart,
    said_line,
    text_for_model,
)
from ganglion.matrix.answers import Answers
from ganglion.matrix.errors import MatrixRequestError
from ganglion.matrix.events import Incoming, is_allowed_user, message_text
from ganglion.matrix.http import Homeserver
from ganglion.threads.commands import parse_command

__all__ = ["GROUP_SIZE", "Prepared", "RoomContext"]

log = logging.getLogger(__name__)

GROUP_SIZE: Final = 3  # joined members, the bot included
REMEMBERED_EVENTS: Final = 256
RELATIONS: Final = "/_matrix/client/v1/rooms"


@dataclass(frozen=True, slots=True)
class Prepared:
    """What to hand on for a message: `text` (what the model reads), of which
    `preamble` comes before the message's own words."""

    text: str
    preamble: str = ""
    heard: bool = False  # it took in the room's context


@dataclass(frozen=True, slots=True)
class _Event:
    sender: str
    text: str


class RoomContext:
    """The addressing and context of one bot's rooms (see the module docstring)."""

    def __init__(self, homeserver: Homeserver, config: MatrixConfig, answers: Answers) -> None:
        self._homeserver = homeserver
        self._config = config
        self._answers = answers
        self._events: OrderedDict[tuple[str, str], _Event | None] = OrderedDict()

    @property
    def _client(self) -> Any:
        return self._homeserver.client

    async def prepare(self, message: Incoming) -> Prepared | None:
        """What to hand on for `message`; None when a group room's message is not for
        the bot (it is kept as context for the next answer)."""
        own = self._client.user_id
        room = self._client.rooms.get(message.room_id)
        conversation = message.conversation
        group = room is not None and room.joined_count >= GROUP_SIZE
        command = not message.media and parse_command(message.text) is not None
        replied = await self._event(message.room_id, message.reply_to, remember=False)
        root = await self._event(message.room_id, message.thread_root, remember=True)
        if (
            group
            and group_rule(self._config, message.room_id) == "mentions"
            and not is_addressed(
                message,
                own,
                self._own_names(room),
                replied_to=replied.sender if replied is not None else None,
                thread_root_by=root.sender if root is not None else None,
                command=command,
            )
        ):
            line = said_line(self._name(room, message.sender), message)
            await self._answers.said(conversation, message.event_id, line)
            log.debug(
                "%s in %s is not for the bot: kept as context", message.event_id, conversation
            )
            return None
        if command:
            return Prepared(message.text)
        quote = None
        if replied is not None and message.reply_to is not None:
            quote = self._quote(room, conversation, message.reply_to, replied)
        elif root is not None and message.thread_root is not None and self._first(conversation):
            quote = self._quote(room, conversation, message.thread_root, root, root=True)
        preamble, text = text_for_model(
            message.text,
            speaker=self._name(room, message.sender) if group else None,
            said=self._answers.said_lines(conversation),
            quote=quote,
        )
        return Prepared(text, preamble, heard=True)

    async def handed_on(self, message: Incoming, prepared: Prepared) -> None:
        """`message` was handed on as `prepared`: the context it took in is forgotten,
        its preamble kept for an edit of it (rule 3)."""
        if prepared.heard:
            await self._answers.heard(message.conversation)
        await self._answers.keep_preamble(message.event_id, message.conversation, prepared.preamble)

    def _first(self, conversation: str) -> bool:
        """Whether nothing of `conversation` was handed on before (a new thread)."""
        return self._answers.newest(conversation) is None

    def _quote(
        self, room: Any, conversation: str, event_id: str, event: _Event, *, root: bool = False
    ) -> Quote | None:
        own = self._client.user_id
        if event.sender == own:
            if not root and self._answers.is_newest_reply(conversation, event_id):
                return None  # the model has just said it
            return Quote(None, event.text, thread_root=root)
        if not is_allowed_user(self._config, event.sender):
            return None  # rule 2
        return Quote(self._name(room, event.sender), event.text, thread_root=root)

    def _own_names(self, room: Any) -> list[str]:
        own = self._client.user_id
        names = [localpart(own)]
        shown = room.user_name(own) if room is not None else None
        return [shown, *names] if shown else names

    def _name(self, room: Any, user_id: str) -> str:
        shown = room.user_name(user_id) if room is not None else None
        return str(shown) if shown else user_id

    async def _event(self, room_id: str, event_id: str | None, *, remember: bool) -> _Event | None:
        """The sender and text of `event_id` (rule 1)."""
        if event_id is None:
            return None
        key = (room_id, event_id)
        if key in self._events:
            self._events.move_to_end(key)
            return self._events[key]
        call = nio.Api.room_get_event(self._client.access_token, room_id, event_id)
        try:
            response = await self._homeserver.request(nio.RoomGetEventResponse, call)
        except MatrixRequestError as exc:
            log.info("cannot read %s in %s for its quote: %s", event_id, room_id, exc)
            found = None
        else:
            found = self._readable(response.event, await self._latest_edit(room_id, event_id))
        if remember:
            self._events[key] = found
            while len(self._events) > REMEMBERED_EVENTS:
                self._events.popitem(last=False)
        return found

    def _readable(self, event: Any, edit: Mapping[str, Any] | None) -> _Event | None:
        """The sender and text of a (decrypted) message event, as its latest `edit`
        shows it (from the same sender); None for anything else."""
        source = _source(event)
        if source is None:
            return None
        sender, content = source.get("sender"), source.get("content")
        if not isinstance(sender, str) or not isinstance(content, Mapping):
            return None
        replaced = edit.get("content") if edit is not None else None
        if edit is not None and edit.get("sender") == sender and isinstance(replaced, Mapping):
            new = replaced.get("m.new_content")
            content = new if isinstance(new, Mapping) else content
        text = message_text(content)
        return _Event(sender, text) if text else None

    async def _latest_edit(self, room_id: str, event_id: str) -> Mapping[str, Any] | None:
        """The newest edit of `event_id`, decrypted (None: none, or unreadable)."""
        path = (
            f"{RELATIONS}/{quote(room_id, safe='')}/relations/{quote(event_id, safe='')}"
            "/m.replace?dir=b&limit=1"
        )
        try:
            answer = await self._homeserver.call("GET", path)
        except MatrixRequestError as exc:
            log.info("cannot read the edits of %s in %s: %s", event_id, room_id, exc)
            return None
        chunk = answer.get("chunk")
        if not isinstance(chunk, list) or not chunk or not isinstance(chunk[0], Mapping):
            return None
        return self._decrypted(room_id, chunk[0])

    def _decrypted(self, room_id: str, event: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """A bundled event's source, decrypted when it is encrypted."""
        parsed: Any = nio.Event.parse_event(dict(event))
        if isinstance(parsed, nio.MegolmEvent):
            parsed.room_id = room_id
            try:
                parsed = self._client.decrypt_event(parsed)
            except nio.EncryptionError:
                return None
        return _source(parsed)


def _source(event: Any) -> Mapping[str, Any] | None:
    source = getattr(event, "source", None)
    if isinstance(event, nio.MegolmEvent) or not isinstance(source, Mapping):
        return None
    return source
