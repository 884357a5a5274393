from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ganglion.chat import ChatMessage, ToolCall
from ganglion.store import ConversationStore, StoreError

THREAD = "web_0123456789abcdef"


async def open_store(tmp_path: Path) -> ConversationStore:
    return await ConversationStore.open(tmp_path / "conversation.db")


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a separate plain connection: proves what is committed on disk."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.aclose()
    store = await open_store(tmp_path)
    await store.aclose()
    assert raw(tmp_path / "conversation.db", "SELECT name FROM _migrations") == [("create_tables",)]
    assert raw(tmp_path / "conversation.db", "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("kind", ["foreign", "garbage", "newer"])
async def test_an_unusable_database_is_refused_and_left_untouched(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "conversation.db"
    if kind == "garbage":
        path.write_bytes(b"this is not sqlite at all" * 100)
    else:
        with sqlite3.connect(path) as conn:
            if kind == "foreign":
                conn.execute("CREATE TABLE recipes (id INTEGER, name TEXT)")
            else:
                conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
                conn.execute("INSERT INTO _migrations VALUES ('from_the_future', 0)")
        conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a usable Ganglion conversation store") as caught:
        await ConversationStore.open(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before


async def test_a_queued_turn_is_durable_and_idempotent(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    turn, created = await store.queue_turn(
        THREAD, ChatMessage("user", "hi"), source="user", turn_id="t1"
    )
    assert created and turn.state == "queued"
    rows = raw(tmp_path / "conversation.db", "SELECT turn_id, state FROM turns")
    assert rows == [("t1", "queued")]
    again, created = await store.queue_turn(
        THREAD, ChatMessage("user", "hi"), source="user", turn_id="t1"
    )
    assert not created and again.turn_id == "t1"
    assert len(raw(tmp_path / "conversation.db", "SELECT * FROM turns")) == 1
    await store.aclose()


async def test_start_turn_appends_the_input_and_marks_it_running(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    turn, _ = await store.queue_turn(THREAD, ChatMessage("user", "hello"), source="user")
    stored = await store.start_turn(turn.turn_id)
    assert stored.message == ChatMessage("user", "hello")
    state = await store.load_thread(THREAD, interface="web")
    assert [m.message.content for m in state.messages] == ["hello"]
    assert [t.state for t in state.pending] == ["running"]
    with pytest.raises(StoreError):
        await store.start_turn(turn.turn_id)
    await store.aclose()


async def test_finish_turn_stores_reply_state_and_outbox_together(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    turn, _ = await store.queue_turn(THREAD, ChatMessage("user", "q"), source="user")
    await store.start_turn(turn.turn_id)
    finished = await store.finish_turn(
        turn.turn_id, state="done", final=ChatMessage("assistant", "a"), outbox={"text": "a"}
    )
    assert finished.message is not None and finished.outbox_id is not None
    path = tmp_path / "conversation.db"
    assert raw(path, "SELECT state FROM turns") == [("done",)]
    assert raw(path, "SELECT payload FROM outbox WHERE delivered_at IS NULL") == [
        ('{"text": "a"}',)
    ]
    assert (await store.load_thread(THREAD, interface="web")).pending == ()
    await store.aclose()


async def test_unfinished_turns_survive_a_reopen_in_order(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    first, _ = await store.queue_turn(THREAD, ChatMessage("user", "one"), source="user")
    await store.start_turn(first.turn_id)
    await store.queue_turn(THREAD, ChatMessage("user", "two"), source="user")
    await store.aclose()
    store = await open_store(tmp_path)
    assert await store.threads_with_pending_turns() == (THREAD,)
    state = await store.load_thread(THREAD, interface="web")
    assert [(t.input.content, t.state) for t in state.pending] == [
        ("one", "running"),
        ("two", "queued"),
    ]
    await store.aclose()


async def test_tool_call_messages_round_trip_exactly(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    messages = [
        ChatMessage(
            "assistant",
            None,
            (ToolCall("c1", "shell", '{"command": "ls"}'), ToolCall("c2", "x", "{}")),
        ),
        ChatMessage("tool", "file.txt", tool_call_id="c1", name="shell"),
        ChatMessage("tool", "ok", tool_call_id="c2", name="x"),
    ]
    for message in messages:
        await store.append(THREAD, "t", message, meta={"duration_ms": 1.5})
    state = await store.load_thread(THREAD, interface="web")
    assert [m.message for m in state.messages] == messages
    assert state.messages[1].meta == {"duration_ms": 1.5}
    await store.aclose()


async def test_new_epoch_archives_history_and_fails_pending_turns(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    await store.append(THREAD, None, ChatMessage("user", "old"))
    await store.set_summary(THREAD, "old summary", 1)
    await store.queue_turn(THREAD, ChatMessage("user", "pending"), source="user")
    assert await store.new_epoch(THREAD) == 1
    state = await store.load_thread(THREAD, interface="web")
    assert (state.messages, state.pending, state.summary, state.epoch) == ((), (), None, 1)
    assert await store.threads_with_pending_turns() == ()
    assert len(raw(tmp_path / "conversation.db", "SELECT * FROM messages")) == 1
    await store.aclose()


async def test_summary_is_stored_and_loaded(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    stored = await store.append(THREAD, None, ChatMessage("user", "x"))
    await store.set_summary(THREAD, "the gist", stored.id)
    state = await store.load_thread(THREAD, interface="web")
    assert (state.summary, state.summary_upto) == ("the gist", stored.id)
    await store.aclose()


async def test_outbox_undelivered_and_mark_delivered(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    ids = []
    for text in ("a", "b"):
        turn, _ = await store.queue_turn(THREAD, ChatMessage("user", text), source="user")
        await store.start_turn(turn.turn_id)
        finished = await store.finish_turn(
            turn.turn_id, state="done", final=ChatMessage("assistant", text), outbox={"text": text}
        )
        assert finished.outbox_id is not None
        ids.append(finished.outbox_id)
    assert [i.payload["text"] for i in await store.undelivered(THREAD)] == ["a", "b"]
    await store.mark_delivered(ids[:1])
    assert [i.id for i in await store.undelivered()] == ids[1:]
    await store.aclose()


async def test_history_page_pages_backwards_oldest_first(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.load_thread(THREAD, interface="web")
    for n in range(10):
        await store.append(THREAD, None, ChatMessage("user", str(n)))
    page = await store.history_page(THREAD, limit=4)
    assert [m.message.content for m in page] == ["6", "7", "8", "9"]
    older = await store.history_page(THREAD, before_id=page[0].id, limit=4)
    assert [m.message.content for m in older] == ["2", "3", "4", "5"]
    await store.aclose()
