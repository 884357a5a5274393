"""The numbered rules of `ganglion.matrix.outgoing`, each against a mock homeserver (httpx
mock transport answering as Synapse does, parsed by nio's own response classes) and an
outbox in memory: what reaches the homeserver, with which transaction id, and what is
marked delivered."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import nio
import pytest
import trio
import trio.testing

from ganglion.backend import Submitted
from ganglion.matrix.crypto import KeyKeeper
from ganglion.matrix.errors import MatrixUnavailable
from ganglion.matrix.http import Homeserver
from ganglion.matrix.outgoing import QUIET_DELAY, Outgoing, transaction_id
from ganglion.matrix.render import MAX_CONTENT_BYTES, split_reply
from ganglion.messages import (
    ApprovalAnswer,
    ApprovalAsked,
    ApprovalResult,
    FinalReply,
    TurnStarted,
    UserMessage,
)
from ganglion.store import OutboxItem, StoredMessage

BOT = "@bot:hs.example"
ROOM = "!room:hs.example"
OTHER_ROOM = "!other:hs.example"
TIMEOUT = 10

Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


@dataclass
class Outbox:
    """The part of the interface backend that `Outgoing` uses: an outbox in memory."""

    items: list[OutboxItem] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)

    def add(self, room_id: str, text: str, turn_id: str | None = None) -> int:
        outbox_id = len(self.items) + 1
        payload = {"text": text}
        self.items.append(OutboxItem(outbox_id, room_id, turn_id, "reply", payload, 0.0))
        return outbox_id

    async def submit(self, message: UserMessage) -> Submitted:
        raise AssertionError("Outgoing never submits")

    async def history(
        self, thread_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[StoredMessage]:
        return []

    async def undelivered(self, thread_id: str | None = None) -> Sequence[OutboxItem]:
        return [
            item
            for item in self.items
            if item.id not in self.delivered and thread_id in (None, item.thread_id)
        ]

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        self.delivered += outbox_ids

    async def stop(self, thread_id: str, turn_id: str) -> None:
        raise AssertionError("Outgoing never stops a turn")

    async def rewind(
        self, thread_id: str, turn_id: str, message_id: str, text: str | None
    ) -> Submitted:
        raise AssertionError("Outgoing never rewinds")

    async def decide_approval(
        self, thread_id: str, approval_id: str, answer: ApprovalAnswer, by: str
    ) -> ApprovalResult:
        raise AssertionError("Outgoing never answers a question")

    async def open_approvals(self, thread_id: str) -> Sequence[ApprovalAsked]:
        return []


@dataclass
class Sent:
    """A message the mock homeserver took: its room, transaction id and body text."""

    room_id: str
    txn_id: str
    body: str
    content: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class MockHomeserver:
    """Answers room sends as Synapse does: an event id per transaction id, the same one
    again for a transaction id it has seen (its idempotency). `refuse` answers the
    next sends with a given status and Matrix error instead."""

    sent: list[Sent] = field(default_factory=list)
    events: dict[tuple[str, str], str] = field(default_factory=dict)
    refuse: list[tuple[int, str]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # paths of every other request

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")
        if "send" not in parts:
            self.other.append(request.url.path)
            answer = {"event_id": f"$redaction-{parts[-1]}"} if "redact" in parts else {}
            return httpx.Response(200, json=answer)
        if self.refuse:
            status, errcode = self.refuse.pop(0)
            return httpx.Response(status, json={"errcode": errcode, "error": "refused"})
        room_id, txn_id = parts[parts.index("rooms") + 1], parts[-1]
        key = (room_id, txn_id)
        if key not in self.events:
            self.events[key] = f"$event{len(self.events)}"
            content = json.loads(request.content)
            self.sent.append(Sent(room_id, txn_id, content["body"], content))
        return httpx.Response(200, json={"event_id": self.events[key]})


def outgoing(
    handler: Handler, outbox: Outbox, *, synced: bool = True, rooms: Sequence[str] = (ROOM,)
) -> Outgoing:
    client: Any = nio.Client(BOT, "BOTDEVICE")
    client.user_id = BOT
    client.access_token = "syt_token"
    for room_id in rooms:
        client.rooms[room_id] = nio.MatrixRoom(room_id, BOT, encrypted=False)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    homeserver = Homeserver(client, http, "https://hs.example/")
    first_sync = trio.Event()
    if synced:
        first_sync.set()
    return Outgoing(homeserver, KeyKeeper(homeserver), outbox, first_sync)


# Rule 1: from the outbox, oldest first, marked delivered once every part was accepted.


async def test_flush_sends_the_rooms_undelivered_replies_oldest_first() -> None:
    server, outbox = MockHomeserver(), Outbox()
    first = outbox.add(ROOM, "one")
    outbox.add(OTHER_ROOM, "elsewhere")
    second = outbox.add(ROOM, "two")
    with trio.fail_after(TIMEOUT):
        await outgoing(server, outbox).flush(ROOM)
    assert [(s.room_id, s.body) for s in server.sent] == [(ROOM, "one"), (ROOM, "two")]
    assert outbox.delivered == [first, second]


async def test_a_reply_in_parts_is_not_marked_delivered_until_every_part_is_accepted() -> None:
    server, outbox = MockHomeserver(), Outbox()
    paragraph = "word " * (MAX_CONTENT_BYTES // 10)
    outbox.add(ROOM, f"{paragraph}\n\n{paragraph}\n\n{paragraph}")
    calls = 0

    async def fail_the_second_part(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 2:
            return httpx.Response(502, text="bad gateway")
        return await server(request)

    sender = outgoing(fail_the_second_part, outbox)
    with trio.fail_after(TIMEOUT), pytest.raises(MatrixUnavailable):
        await sender.flush(ROOM)
    assert len(server.sent) == 1
    assert outbox.delivered == []


async def test_a_delivered_reply_is_not_sent_again() -> None:
    server, outbox = MockHomeserver(), Outbox()
    outbox.add(ROOM, "once")
    sender = outgoing(server, outbox)
    with trio.fail_after(TIMEOUT):
        await sender.flush(ROOM)
        await sender.flush(ROOM)
    assert [s.body for s in server.sent] == ["once"]


# Rule 2: transaction ids derived from the outbox id, the same on every resend.


def test_the_transaction_id_names_the_outbox_entry_and_the_part() -> None:
    assert transaction_id(7, 0) == "ganglion-7"
    assert transaction_id(7, 2) == "ganglion-7-2"


async def test_a_resend_after_a_lost_answer_reuses_the_transaction_ids() -> None:
    server, outbox = MockHomeserver(), Outbox()
    paragraph = "word " * (MAX_CONTENT_BYTES // 10)
    text = f"{paragraph}\n\n{paragraph}"
    parts = len(split_reply(text))
    assert parts > 1
    outbox_id = outbox.add(ROOM, text)
    txn_ids: list[str] = []
    lose_answer = True

    async def accept_then_lose_the_answer(request: httpx.Request) -> httpx.Response:
        nonlocal lose_answer
        txn_ids.append(request.url.path.rsplit("/", 1)[1])
        answer = await server(request)
        if len(txn_ids) == parts and lose_answer:  # stored, but its answer never arrives
            lose_answer = False
            raise httpx.ReadError("connection reset")
        return answer

    sender = outgoing(accept_then_lose_the_answer, outbox)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(MatrixUnavailable):
            await sender.flush(ROOM)
        await sender.flush(ROOM)
    expected = [transaction_id(outbox_id, part) for part in range(parts)]
    assert txn_ids == [*expected, *expected]
    assert [s.txn_id for s in server.sent] == expected  # the homeserver stored each once
    assert outbox.delivered == [outbox_id]


# Rule 3: one room's sends one at a time, in order; other rooms meanwhile.


async def test_sends_into_one_room_wait_for_each_other_while_other_rooms_go_on() -> None:
    server, outbox = MockHomeserver(), Outbox()
    outbox.add(ROOM, "first")
    release = trio.Event()
    held = trio.Event()
    order: list[str] = []

    async def hold_the_first_send(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)["body"]
        order.append(body)
        if body == "first":
            held.set()
            await release.wait()
        return await server(request)

    sender = outgoing(hold_the_first_send, outbox, rooms=(ROOM, OTHER_ROOM))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush, ROOM)
            await held.wait()
            outbox.add(ROOM, "second")
            outbox.add(OTHER_ROOM, "meanwhile")
            nursery.start_soon(sender.flush, ROOM)
            await sender.flush(OTHER_ROOM)
            await trio.testing.wait_all_tasks_blocked()
            assert order == ["first", "meanwhile"]
            release.set()
    assert order == ["first", "meanwhile", "second"]
    assert [s.body for s in server.sent if s.room_id == ROOM] == ["first", "second"]


# Rule 4: nothing before the first sync.


async def test_nothing_is_sent_before_the_first_sync_and_the_sync_will_sweep() -> None:
    server, outbox = MockHomeserver(), Outbox()
    outbox.add(ROOM, "too early")
    sender = outgoing(server, outbox, synced=False)
    sender.needs_sweep = False
    with trio.fail_after(TIMEOUT):
        await sender.flush(ROOM)
        await sender.notice(ROOM, "a notice, too early")
    assert server.sent == [] and server.other == []
    assert outbox.delivered == []
    assert sender.needs_sweep


# Rule 5: refused for good is marked delivered; unreachable stays for the next sweep.


@pytest.mark.parametrize(("status", "errcode"), [(403, "M_FORBIDDEN"), (413, "M_TOO_LARGE")])
async def test_a_reply_refused_for_good_is_marked_delivered_and_the_next_goes_out(
    status: int, errcode: str
) -> None:
    server, outbox = MockHomeserver(), Outbox()
    refused, after = outbox.add(ROOM, "refused"), outbox.add(ROOM, "after it")
    server.refuse = [(status, errcode)]
    with trio.fail_after(TIMEOUT):
        await outgoing(server, outbox).flush(ROOM)
    assert [s.body for s in server.sent] == ["after it"]
    assert outbox.delivered == [refused, after]


async def test_a_reply_for_a_room_the_bot_is_not_in_is_marked_delivered() -> None:
    server, outbox = MockHomeserver(), Outbox()
    outbox_id = outbox.add(OTHER_ROOM, "nowhere to go")
    with trio.fail_after(TIMEOUT):
        await outgoing(server, outbox, rooms=(ROOM,)).flush(OTHER_ROOM)
    assert server.sent == []
    assert outbox.delivered == [outbox_id]


async def test_a_reply_the_homeserver_could_not_take_stays_for_the_next_sweep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, outbox = MockHomeserver(), Outbox()
    outbox_id = outbox.add(ROOM, "later")
    server.refuse = [(503, "M_UNKNOWN")]
    sender = outgoing(server, outbox)
    with trio.fail_after(TIMEOUT):
        await sender.sweep()
        assert sender.needs_sweep and outbox.delivered == [] and server.sent == []
        await sender.sweep()
    assert not sender.needs_sweep
    assert [s.body for s in server.sent] == ["later"]
    assert outbox.delivered == [outbox_id]


# Rule 7: an answer given again edits the first event; a long one's further parts go.


async def test_a_long_reply_given_again_edits_its_first_event_and_redacts_the_others() -> None:
    server, outbox = MockHomeserver(), Outbox()
    paragraph = "word " * (MAX_CONTENT_BYTES // 10)
    long = f"{paragraph}\n\n{paragraph}"
    outbox.add(ROOM, long, "t1")
    sender = outgoing(server, outbox)
    with trio.fail_after(TIMEOUT):
        await sender.flush(ROOM)
        first, *others = [server.events[ROOM, s.txn_id] for s in server.sent]
        assert len(others) == len(split_reply(long)) - 1 >= 1
        await sender.answers.replacing(ROOM, "t2", "t1")
        again = outbox.add(ROOM, "short now", "t2")
        await sender.flush(ROOM)
        await sender.flush(ROOM)  # delivered: nothing twice
    edit = server.sent[-1].content
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": first}
    assert edit["m.new_content"]["body"] == "short now"
    redactions = [path for path in server.other if "/redact/" in path]
    assert [path.split("/")[-2:] for path in redactions] == [
        [old, f"ganglion-{again}-r{index}"] for index, old in enumerate(others)
    ]
    # The short answer has no further parts: the next answer again has none to redact.
    await sender.answers.replacing(ROOM, "t3", "t2")
    assert sender.answers.replaced_parts("t3") == []


# Rule 9: a thread's conversation is answered in the thread.


async def test_a_threads_reply_goes_into_its_room_in_the_thread() -> None:
    server, outbox = MockHomeserver(), Outbox()
    thread = f"{ROOM}/$root"
    outbox.add(thread, "in the thread")
    with trio.fail_after(TIMEOUT):
        sender = outgoing(server, outbox)
        await sender.sweep()
    [sent] = server.sent
    assert sent.room_id == ROOM and sent.body == "in the thread"
    assert sent.content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root"},
    }
    assert outbox.delivered == [1]


# Typing notices: only for a turn still running after QUIET_DELAY, then stopped.


async def test_a_quick_answer_sends_no_typing_notice_and_a_slow_one_starts_and_stops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, outbox = MockHomeserver(), Outbox()
    typing: list[tuple[str, bool]] = []

    async def record_typing(request: httpx.Request) -> httpx.Response:
        if "/typing/" in request.url.path:
            typing.append((request.url.path.split("/")[-3], json.loads(request.content)["typing"]))
        return await server(request)

    send, receive = trio.open_memory_channel[Any](10)
    inbox: Any = receive  # what serve reads: its events, in order
    sender = outgoing(record_typing, outbox)

    async def turn(turn_id: str, takes: float) -> None:
        await send.send(TurnStarted(ROOM, turn_id))
        await trio.sleep(takes)
        outbox_id = outbox.add(ROOM, f"answer {turn_id}", turn_id)
        await send.send(FinalReply(ROOM, turn_id, f"answer {turn_id}", outbox_id))
        await trio.sleep(1)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.serve, inbox)
            await turn("t1", QUIET_DELAY / 5)
            assert typing == []  # answered before anyone could see it typing
            await turn("t2", QUIET_DELAY * 4)
            assert typing == [(ROOM, True), (ROOM, False)]
            await turn("t3", 0)
            assert typing == [(ROOM, True), (ROOM, False)]
            await send.aclose()
    assert [s.body for s in server.sent] == ["answer t1", "answer t2", "answer t3"]
