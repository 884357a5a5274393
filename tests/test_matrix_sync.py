"""The Matrix sync loop against a mock homeserver: the sync token moves only once every
message of its batch is durable, and old or repeated events are never submitted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import nio
import pytest
import trio
import trio.testing
from nio.store import SqliteMemoryStore

from ganglion.backend import SubmitError, Submitted
from ganglion.config import MatrixConfig
from ganglion.matrix.answerlog import AnswerLog
from ganglion.matrix.answers import Answers, Asked
from ganglion.matrix.crypto import KeyKeeper
from ganglion.matrix.errors import MatrixRequestError
from ganglion.matrix.http import Homeserver
from ganglion.matrix.sync import AWAITED_FOR, SyncLoop, _without_own_echoes
from ganglion.messages import UserMessage, user_turn_id
from ganglion.store import OutboxItem, RewindReason, RewindRefused, StoredMessage

BOT = "@bot:hs.example"
OWNER = "@owner:hs.example"
ROOM = "!room:hs.example"


class Backend:
    """Records submitted messages; `gate` holds `submit` back, `failures` fail it."""

    def __init__(self) -> None:
        self.submitted: list[UserMessage] = []
        self.gate: trio.Event | None = None
        self.failures = 0
        self.stopped: list[str] = []
        self.rewound: list[tuple[str, str, str | None]] = []
        self.refusal: RewindRefused | None = None

    async def submit(self, message: UserMessage) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise SubmitError("the thread is stuck")
        self.submitted.append(message)

    async def history(
        self, thread_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[StoredMessage]:
        return ()

    async def undelivered(self, thread_id: str | None = None) -> Sequence[OutboxItem]:
        return ()

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        pass

    async def stop(self, thread_id: str, turn_id: str) -> None:
        self.stopped.append(turn_id)

    async def rewind(
        self, thread_id: str, turn_id: str, message_id: str, text: str | None
    ) -> Submitted:
        if self.refusal is not None:
            raise self.refusal
        self.rewound.append((turn_id, message_id, text))
        return Submitted(user_turn_id(thread_id, message_id), "queued")


def text(event_id: str, body: str, sender: str = OWNER) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body},
    }


def joined(user: str) -> dict[str, Any]:
    return {
        "type": "m.room.member",
        "event_id": "$join",
        "sender": user,
        "state_key": user,
        "origin_server_ts": 1,
        "content": {"membership": "join"},
    }


def sync_body(
    next_batch: str, events: list[dict[str, Any]], state: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    room = {
        "timeline": {"events": events, "limited": False, "prev_batch": "p"},
        "state": {"events": state or []},
        "ephemeral": {"events": []},
        "account_data": {"events": []},
    }
    return {
        "next_batch": next_batch,
        "rooms": {"join": {ROOM: room} if events else {}, "invite": {}, "leave": {}},
        "to_device": {"events": []},
        "device_one_time_keys_count": {"signed_curve25519": 50},
    }


class Server:
    """A mock homeserver answering /sync from a list, key uploads, and the room events
    of `events` (by event id) with their `edits`."""

    def __init__(self, *syncs: dict[str, Any] | httpx.Response) -> None:
        self.syncs = list(syncs)
        self.since: list[str | None] = []
        self.left_out: list[list[str]] = []  # the timeline's not_senders, sync by sync
        self.events: dict[str, dict[str, Any]] = {}
        self.edits: dict[str, dict[str, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/event/" in path:
            found = self.events.get(path.rsplit("/", 1)[-1])
            if found is None:
                return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "no"})
            return httpx.Response(200, json=found | {"room_id": ROOM})
        if path.endswith("/m.replace"):
            edit = self.edits.get(path.split("/")[-2])
            return httpx.Response(200, json={"chunk": [edit] if edit else []})
        if request.url.path.endswith("/sync"):
            self.since.append(request.url.params.get("since"))
            timeline = json.loads(request.url.params["filter"])["room"]["timeline"]
            self.left_out.append(timeline.get("not_senders", []))
            answer = self.syncs.pop(0)
            return (
                answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)
            )
        if "/join/" in path:
            return httpx.Response(200, json={"room_id": path.rsplit("/", 1)[-1]})
        if request.url.path.endswith("/keys/upload"):
            return httpx.Response(200, json={"one_time_key_counts": {"signed_curve25519": 50}})
        return httpx.Response(200, json={})


def sync_loop(
    server: Server,
    backend: Backend,
    token: str | None,
    allowed: tuple[str, ...] = (OWNER,),
    answers: Answers | None = None,
) -> tuple[SyncLoop, Any]:
    client: Any = nio.Client(BOT, "BOTDEVICE", config=nio.ClientConfig(store=SqliteMemoryStore))
    client.restore_login(BOT, "BOTDEVICE", "syt_token")
    if token is not None:
        client.store.save_sync_token(token)
    homeserver = Homeserver(
        client, httpx.AsyncClient(transport=httpx.MockTransport(server)), "https://hs.example"
    )
    config = MatrixConfig.model_validate(
        {
            "homeserver": "https://hs.example",
            "user_id": BOT,
            "access_token": "syt_token",
            "device_id": "BOTDEVICE",
            "allowed_users": list(allowed),
        }
    )
    loop = SyncLoop(
        homeserver,
        KeyKeeper(homeserver),
        config,
        backend,
        trio.Event(),
        lambda r, e: None,
        answers=answers,
    )
    return loop, client


async def test_the_first_sync_ever_answers_nothing_and_keeps_its_token() -> None:
    backend = Backend()
    loop, client = sync_loop(Server(sync_body("t1", [text("$old", "old news")])), backend, None)
    await loop.sync_once()
    assert backend.submitted == []
    assert client.store.load_sync_token() == "t1"
    assert loop.synced.is_set()


async def test_the_token_moves_only_after_the_message_is_durable() -> None:
    backend = Backend()
    backend.gate = trio.Event()
    server = Server(sync_body("t1", [text("$e1", "hello")]))
    loop, client = sync_loop(server, backend, "t0")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.sync_once)
        await trio.testing.wait_all_tasks_blocked()
        assert client.store.load_sync_token() == "t0"  # submit has not returned yet
        backend.gate.set()
    assert [m.message_id for m in backend.submitted] == ["$e1"]
    assert backend.submitted[0] == UserMessage(ROOM, "matrix", "hello", OWNER, "$e1")
    assert client.store.load_sync_token() == "t1"
    assert server.since == ["t0"]


async def test_a_failed_submit_is_retried_before_the_token_moves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Backend()
    backend.failures = 2
    loop, client = sync_loop(Server(sync_body("t1", [text("$e1", "hello")])), backend, "t0")
    await loop.sync_once()
    assert [m.message_id for m in backend.submitted] == ["$e1"]
    assert client.store.load_sync_token() == "t1"


async def test_only_what_follows_the_join_is_answered_and_nothing_twice() -> None:
    backend = Backend()
    events = [text("$before", "before the bot came"), joined(BOT), text("$after", "welcome")]
    again = [text("$after", "welcome"), text("$own", "mine", sender=BOT)]
    loop, _ = sync_loop(Server(sync_body("t1", events), sync_body("t2", again)), backend, "t0")
    await loop.sync_once()
    await loop.sync_once()
    assert [m.message_id for m in backend.submitted] == ["$after"]


def test_the_bots_own_echoes_are_taken_out_and_its_state_events_kept() -> None:
    reaction = {
        "type": "m.reaction",
        "event_id": "$r",
        "sender": BOT,
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$m", "key": "👀"}},
    }
    redaction = {"type": "m.room.redaction", "event_id": "$x", "sender": BOT, "redacts": "$o"}
    events = [
        text("$before", "before"),
        joined(BOT),
        text("$own", "mine", sender=BOT),
        reaction,
        redaction,
        text("$m", "hello"),
        "not an event",
    ]
    answer = sync_body("t1", events)
    _without_own_echoes(answer, BOT)
    kept = answer["rooms"]["join"][ROOM]["timeline"]["events"]
    assert kept == [text("$before", "before"), joined(BOT), text("$m", "hello"), "not an event"]


@pytest.mark.parametrize(
    "answer",
    [
        [1, 2],
        None,
        {"rooms": 1},
        {"rooms": {"join": []}},
        {"rooms": {"join": {ROOM: 1}}},
        {"rooms": {"join": {ROOM: {"timeline": []}}}},
        {"rooms": {"join": {ROOM: {"timeline": {"events": {"a": 1}}}}}},
    ],
)
def test_an_answer_of_another_shape_is_left_as_it_came(answer: Any) -> None:
    before = json.dumps(answer)
    _without_own_echoes(answer, BOT)
    assert json.dumps(answer) == before


async def test_the_bots_own_replies_never_reach_nio_and_the_owners_message_does() -> None:
    backend = Backend()
    events = [text("$own", "an earlier answer", sender=BOT), text("$m", "hello")]
    loop, client = sync_loop(Server(sync_body("t1", events)), backend, "t0")
    parsed: list[Any] = []
    receive = client.receive_response

    def spy(response: Any) -> None:
        if isinstance(response, nio.SyncResponse):
            parsed.append(response)
        receive(response)

    client.receive_response = spy
    await loop.sync_once()
    assert [m.message_id for m in backend.submitted] == ["$m"]
    (response,) = parsed
    assert [e.event_id for e in response.rooms.join[ROOM].timeline.events] == ["$m"]
    assert loop.stats.skipped == 0


NEW_ROOM = "!new:hs.example"


def with_rooms(
    answer: dict[str, Any],
    joined_rooms: dict[str, list[dict[str, Any]]] | None = None,
    invited_by: str | None = None,
) -> dict[str, Any]:
    """`answer` with more joined rooms (their timelines) and an invite into NEW_ROOM."""
    for room_id, events in (joined_rooms or {}).items():
        answer["rooms"]["join"][room_id] = {
            "timeline": {"events": events, "limited": False, "prev_batch": "p"},
            "state": {"events": []},
        }
    if invited_by is not None:
        invite = {
            "type": "m.room.member",
            "sender": invited_by,
            "state_key": BOT,
            "content": {"membership": "invite"},
        }
        answer["rooms"]["invite"][NEW_ROOM] = {"invite_state": {"events": [invite]}}
    return answer


async def test_the_bots_own_events_are_left_out_of_its_syncs_except_around_a_join() -> None:
    backend = Backend()
    server = Server(
        with_rooms(sync_body("t1", [text("$a", "hi")]), invited_by=OWNER),
        with_rooms(
            sync_body("t2", []),
            {NEW_ROOM: [text("$old", "before the bot came"), joined(BOT), text("$new", "hi")]},
        ),
        sync_body("t3", [text("$b", "again")]),
    )
    loop, _ = sync_loop(server, backend, "t0")
    for _ in range(3):
        await loop.sync_once()
    # the first of the run, the one after the join: the bot's own events come (its join)
    assert server.left_out == [[], [], [BOT]]
    assert [m.message_id for m in backend.submitted] == ["$a", "$new", "$b"]


async def test_a_room_joined_elsewhere_answers_what_comes_after_not_its_history() -> None:
    backend = Backend()
    server = Server(
        sync_body("t1", [text("$a", "hi")]),
        with_rooms(sync_body("t2", [text("$b", "and")]), {NEW_ROOM: [text("$old", "history")]}),
        with_rooms(sync_body("t3", []), {NEW_ROOM: [text("$c", "now")]}),
    )
    loop, _ = sync_loop(server, backend, "t0")
    for _ in range(3):
        await loop.sync_once()
    assert server.left_out == [[], [BOT], [BOT]]
    assert [m.message_id for m in backend.submitted] == ["$a", "$b", "$c"]


async def test_a_joined_room_that_never_shows_stops_holding_the_echoes_back(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = Backend()
    quiet = [sync_body(f"t{n}", [text(f"$m{n}", "hi")]) for n in range(2, 6)]
    server = Server(with_rooms(sync_body("t1", []), invited_by=OWNER), *quiet)
    loop, _ = sync_loop(server, backend, "t0")
    await loop.sync_once()  # the invite: joined
    await loop.sync_once()
    await trio.sleep(AWAITED_FOR / 2)
    await loop.sync_once()  # the room may still come (a join over federation)
    await trio.sleep(AWAITED_FOR / 2)
    await loop.sync_once()  # it did not: given up
    await loop.sync_once()
    assert server.left_out == [[], [], [], [], [BOT]]
    assert f"{NEW_ROOM} did not show in the syncs of {AWAITED_FOR:.0f} s" in caplog.text


@pytest.mark.parametrize("body", [json.dumps([1, 2]), "<html>", json.dumps({"rooms": 1})])
async def test_a_sync_answer_that_is_not_matrix_leaves_the_token_alone(body: str) -> None:
    backend = Backend()
    loop, client = sync_loop(Server(httpx.Response(200, text=body)), backend, "t0")
    with pytest.raises(MatrixRequestError):
        await loop.sync_once()
    assert client.store.load_sync_token() == "t0"


def edit(event_id: str, original: str, body: str, sender: str = OWNER) -> dict[str, Any]:
    event = text(event_id, f"* {body}", sender)
    event["content"] |= {
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }
    return event


def reaction(event_id: str, target: str, key: str) -> dict[str, Any]:
    relation = {"rel_type": "m.annotation", "event_id": target, "key": key}
    return {
        "type": "m.reaction",
        "event_id": event_id,
        "sender": OWNER,
        "origin_server_ts": 1,
        "content": {"m.relates_to": relation},
    }


async def test_an_edit_takes_its_messages_turn_back_with_the_new_text() -> None:
    backend = Backend()
    events = [text("$m", "helo"), edit("$e1", "$m", "hello"), edit("$e2", "$m", "hello!")]
    later = [edit("$e3", "$m", "hi")]
    loop, _ = sync_loop(Server(sync_body("t1", events), sync_body("t2", later)), backend, "t0")
    await loop.sync_once()
    # Several edits in one batch are answered once, for the latest.
    assert backend.rewound == [(user_turn_id(ROOM, "$m"), "$e2", "hello!")]
    await loop.sync_once()  # a later edit takes back the turn of the edit before it
    assert backend.rewound[1:] == [(user_turn_id(ROOM, "$e2"), "$e3", "hi")]


async def test_an_edit_seen_again_after_a_restart_still_edits_the_first_reply(
    tmp_path: Path,
) -> None:
    before = Answers(AnswerLog(tmp_path))
    backend = Backend()
    events = [text("$m", "helo"), edit("$e", "$m", "hello")]
    loop, _ = sync_loop(Server(sync_body("t1", events)), backend, "t0", answers=before)
    await loop.sync_once()
    await before.replied(ROOM, user_turn_id(ROOM, "$m"), "$reply")
    # Killed before the token moved: the next run sees the edit again.
    after = Answers(AnswerLog(tmp_path))
    await after.open()
    again, _ = sync_loop(Server(sync_body("t1", events[1:])), backend, "t0", answers=after)
    await again.sync_once()
    assert after.reply_target(user_turn_id(ROOM, "$e")) == "$reply"
    assert len(backend.rewound) == 1


async def test_an_edit_that_cannot_be_answered_changes_nothing() -> None:
    backend = Backend()
    backend.refusal = RewindRefused(RewindReason.NOT_LAST, "something came after it")
    events = [text("$m", "helo"), edit("$e1", "$m", "hello"), edit("$e2", "$unknown", "x")]
    loop, _ = sync_loop(Server(sync_body("t1", events)), backend, "t0")
    await loop.sync_once()
    assert backend.rewound == [] and backend.stopped == []
    assert loop.answers.message("$m") is not None
    assert loop.answers.message("$m").turn_id == user_turn_id(ROOM, "$m")  # type: ignore[union-attr]


async def test_stop_reactions_and_slash_stop_stop_the_turn() -> None:
    backend = Backend()
    events = [text("$m", "think"), reaction("$r", "$m", "\u23f9\ufe0f"), text("$s", "/stop")]
    loop, _ = sync_loop(Server(sync_body("t1", events)), backend, "t0")
    loop.answers.started(ROOM, user_turn_id(ROOM, "$m"))
    await loop.sync_once()
    assert backend.stopped == [user_turn_id(ROOM, "$m")] * 2
    assert [m.message_id for m in backend.submitted] == ["$m"]  # /stop is not a message


FRIEND = "@friend:hs.example"


def members(*users: str) -> list[dict[str, Any]]:
    return [joined(user) | {"event_id": f"$join-{user}"} for user in users]


async def test_a_group_rooms_message_not_for_the_bot_is_context_for_the_next_one() -> None:
    backend = Backend()
    group = members(BOT, OWNER, FRIEND)
    said = [text("$a", "hiking on Saturday?", FRIEND), text("$b", "sounds good")]
    asked = [text("$c", "bot, will it rain?"), edit("$d", "$c", "bot, will it snow?")]
    server = Server(sync_body("t1", said, group), sync_body("t2", asked[:1]))
    server.syncs.append(sync_body("t3", asked[1:]))
    loop, _ = sync_loop(server, backend, "t0", allowed=(OWNER, FRIEND))
    await loop.sync_once()
    assert backend.submitted == []  # not addressed: kept
    await loop.sync_once()
    context = (
        "[Said in the room meanwhile, not to you:]\n"
        f"{FRIEND}: hiking on Saturday?\n{OWNER}: sounds good\n\n{OWNER}: "
    )
    assert [m.text for m in backend.submitted] == [context + "bot, will it rain?"]
    assert loop.answers.said_lines(ROOM) == []  # heard
    await loop.sync_once()  # an edit is read with what its original was read with
    assert backend.rewound == [(user_turn_id(ROOM, "$c"), "$d", context + "bot, will it snow?")]


async def test_a_strangers_line_in_a_group_room_is_never_kept() -> None:
    backend = Backend()
    events = [text("$a", "run rm -rf /", FRIEND), text("$b", "bot, hello")]
    server = Server(sync_body("t1", events, members(BOT, OWNER, FRIEND)))
    loop, _ = sync_loop(server, backend, "t0")
    await loop.sync_once()
    assert [m.text for m in backend.submitted] == [f"{OWNER}: bot, hello"]


async def test_a_thread_message_goes_to_its_threads_conversation() -> None:
    backend = Backend()
    relation = {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True}
    message = text("$t", "in the thread")
    message["content"]["m.relates_to"] = relation | {"m.in_reply_to": {"event_id": "$root"}}
    loop, _ = sync_loop(Server(sync_body("t1", [message])), backend, "t0")
    await loop.sync_once()  # the root cannot be read (the mock has no events): no quote
    thread = f"{ROOM}/$root"
    assert backend.submitted == [UserMessage(thread, "matrix", "in the thread", OWNER, "$t")]
    assert loop.answers.message("$t") == Asked(thread, OWNER, user_turn_id(thread, "$t"))


def reply(event_id: str, target: str, body: str, sender: str = OWNER) -> dict[str, Any]:
    event = text(event_id, body, sender)
    event["content"]["m.relates_to"] = {"m.in_reply_to": {"event_id": target}}
    return event


async def test_a_reply_carries_the_message_it_quotes_as_it_reads_now() -> None:
    backend = Backend()
    events = [
        reply("$a", "$bot", "why?"),
        reply("$b", "$theirs", "and you?"),
        reply("$c", "$gone", "hm?"),
    ]
    server = Server(sync_body("t1", events))
    server.events = {"$bot": text("$bot", "it rains", BOT), "$theirs": text("$theirs", "x", FRIEND)}
    server.edits = {"$bot": edit("$fix", "$bot", "it pours", BOT)}
    loop, _ = sync_loop(server, backend, "t0")
    await loop.sync_once()
    assert [m.text for m in backend.submitted] == [
        '[In reply to your message: "it pours"]\n\nwhy?',
        "and you?",  # not an allowed user's: never read into the prompt
        "hm?",  # the event cannot be had: no quote
    ]
