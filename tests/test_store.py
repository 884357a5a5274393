from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import sqlite_utils
import trio
import trio.testing

from ganglion.store import (
    ConversationStore,
    MigrationError,
    Migrations,
    RewindRefused,
    StoredMessage,
    StoreError,
    Turn,
)
from ganglion.transcript import ChatMessage, ToolCall

THREAD = "web_0123456789abcdef"
OTHER = "!room:example.org"
TIMEOUT = 10


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a separate plain connection: proves what is committed on disk."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def begin(
    store: ConversationStore,
    thread_id: str,
    message: ChatMessage,
    *,
    source: str = "user",
    turn_id: str | None = None,
) -> tuple[Turn, StoredMessage]:
    """A turn queued and started, as a thread actor does when its turn comes."""
    turn, _ = await store.turns.queue_turn(thread_id, message, source=source, turn_id=turn_id)
    stored = await store.turns.start_turn(turn.turn_id)
    return replace(turn, state="running", user_message_id=stored.id), stored


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversation.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[ConversationStore]:
    with trio.fail_after(TIMEOUT):
        store = await ConversationStore.open(db_path)
        await store.turns.load_thread(THREAD, interface="web")
    yield store
    with trio.fail_after(TIMEOUT):
        await store.aclose()


# -- the migrations mechanism ----------------------------------------------------------------


def two_step_migrations(*, fail_second: bool = False) -> Migrations:
    migrations = Migrations("test")

    @migrations.migration
    def create_notes(db: sqlite_utils.Database) -> None:
        db.table("notes").create({"id": int, "text": str}, pk="id")

    @migrations.migration
    def create_tags(db: sqlite_utils.Database) -> None:
        db.table("tags").create({"id": int}, pk="id")
        if fail_second:
            raise RuntimeError("boom")

    return migrations


def test_migrations_are_applied_once_in_order_and_recorded() -> None:
    db = sqlite_utils.Database(memory=True)
    migrations = two_step_migrations()
    assert migrations.apply(db) == ["create_notes", "create_tags"]
    assert migrations.apply(db) == []
    assert [r["name"] for r in db.query("SELECT name FROM _migrations ORDER BY rowid")] == [
        "create_notes",
        "create_tags",
    ]


def test_a_failing_migration_leaves_neither_schema_nor_record() -> None:
    db = sqlite_utils.Database(memory=True)
    with pytest.raises(RuntimeError, match="boom"):
        two_step_migrations(fail_second=True).apply(db)
    assert "tags" not in db.table_names()
    assert [r["name"] for r in db.query("SELECT name FROM _migrations")] == ["create_notes"]
    assert two_step_migrations().apply(db) == ["create_tags"]


def test_a_migration_name_is_registered_only_once() -> None:
    migrations = two_step_migrations()

    def create_notes(db: sqlite_utils.Database) -> None:
        pass

    with pytest.raises(ValueError, match="create_notes"):
        migrations.migration(create_notes)


def test_unknown_recorded_migrations_are_refused_without_writing() -> None:
    db = sqlite_utils.Database(memory=True)
    newer = two_step_migrations()

    @newer.migration
    def add_colour(db: sqlite_utils.Database) -> None:
        db.table("notes").add_column("colour", str)

    newer.apply(db)
    with pytest.raises(MigrationError, match=r"newer version.*add_colour"):
        two_step_migrations().apply(db)


# -- opening ---------------------------------------------------------------------------------


async def test_opening_creates_the_schema_and_records_its_migration(db_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        await (await ConversationStore.open(db_path)).aclose()
    assert raw(db_path, "SELECT name FROM _migrations ORDER BY rowid") == [
        ("create_tables",),
        ("index_undelivered_outbox",),
        ("display_rows_titles_and_search",),
        ("superseded_messages",),
        ("attachments",),
        ("usage_and_models",),
        ("approvals",),
        ("answer_versions",),
        ("generated_titles",),
    ]
    tables = {row[0] for row in raw(db_path, "SELECT name FROM sqlite_master")}
    assert {"threads", "messages", "turns", "outbox", "messages_by_thread", "usage"} <= tables


async def test_reopening_applies_nothing_and_keeps_the_data(db_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        store = await ConversationStore.open(db_path)
        await store.turns.load_thread(THREAD, interface="web")
        await store.turns.append(THREAD, None, ChatMessage("user", "kept"))
        await store.aclose()
        recorded = raw(db_path, "SELECT name, applied_at FROM _migrations")
        store = await ConversationStore.open(db_path)
        state = await store.turns.load_thread(THREAD, interface="web")
        await store.aclose()
    assert raw(db_path, "SELECT name, applied_at FROM _migrations") == recorded
    assert [m.message.content for m in state.messages] == ["kept"]


async def test_the_database_is_in_wal_mode_with_full_sync(
    db_path: Path, store: ConversationStore
) -> None:
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    # per connection, so only the store's own connection can tell: 2 is FULL
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)
    assert store._db.execute("PRAGMA foreign_keys").fetchone() == (1,)


def make_foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE recipes (id INTEGER, name TEXT)")
    conn.close()


def make_newer(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        conn.execute("INSERT INTO _migrations VALUES ('create_tables', 0), ('from_the_future', 0)")
    conn.close()


def make_other_store(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        conn.execute("INSERT INTO _migrations VALUES ('create_reminders', 0)")
    conn.close()


def make_garbage(path: Path) -> None:
    path.write_bytes(b"this is not sqlite at all" * 100)


def make_damaged(path: Path) -> None:
    """A real conversation store whose header and schema are intact but one data page
    is overwritten: only an integrity check notices."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        conn.execute("INSERT INTO _migrations VALUES ('create_tables', 0)")
        conn.execute("CREATE TABLE filler (text TEXT)")
        conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 200,)] * 500)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    data[2 * page_size : 3 * page_size] = b"\xff" * page_size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (make_foreign, "tables that are not Ganglion's conversation store"),
        (make_newer, r"newer version of Ganglion .*from_the_future"),
        (make_other_store, r"not Ganglion's conversation store .*create_reminders"),
        (make_garbage, "not a usable SQLite database"),
        (make_damaged, "the database is corrupt"),
    ],
)
async def test_an_unusable_database_is_refused_and_left_untouched(
    db_path: Path, make: Callable[[Path], None], reason: str
) -> None:
    make(db_path)
    before = await trio.Path(db_path).read_bytes()
    with trio.fail_after(TIMEOUT), pytest.raises(StoreError, match=reason) as caught:
        await ConversationStore.open(db_path)
    assert str(db_path) in str(caught.value)
    assert "not a usable Ganglion conversation store" in str(caught.value)
    assert await trio.Path(db_path).read_bytes() == before


# -- turns -----------------------------------------------------------------------------------


async def test_a_queued_turn_is_durable_and_idempotent(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        turn, created = await store.turns.queue_turn(
            THREAD, ChatMessage("user", "hi"), source="user", turn_id="t1"
        )
        again, created_again = await store.turns.queue_turn(
            THREAD, ChatMessage("user", "hi"), source="user", turn_id="t1"
        )
    assert created and turn.state == "queued" and turn.user_message_id is None
    assert not created_again and again == turn
    assert raw(db_path, "SELECT turn_id, state FROM turns") == [("t1", "queued")]
    assert raw(db_path, "SELECT count(*) FROM messages") == [(0,)]


async def test_a_turn_id_of_another_thread_is_refused(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        await store.turns.load_thread(OTHER, interface="matrix")
        await begin(store, THREAD, ChatMessage("user", "hi"), source="user", turn_id="t1")
        with pytest.raises(StoreError, match="belongs to thread"):
            await begin(store, OTHER, ChatMessage("user", "hi"), source="user", turn_id="t1")


async def test_start_turn_appends_the_input_and_marks_it_running(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        turn, _ = await store.turns.queue_turn(THREAD, ChatMessage("user", "hello"), source="user")
        stored = await store.turns.start_turn(turn.turn_id)
        state = await store.turns.load_thread(THREAD, interface="web")
        with pytest.raises(StoreError, match="not queued"):
            await store.turns.start_turn(turn.turn_id)
    assert stored.message == ChatMessage("user", "hello")
    assert [m.message.content for m in state.messages] == ["hello"]
    assert [(t.state, t.user_message_id) for t in state.pending] == [("running", stored.id)]


async def test_begin_turn_queues_and_starts_in_one_write_once(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        turn, stored = await store.turns.begin_turn(
            THREAD, ChatMessage("user", "hello"), source="user", turn_id="t1"
        )
        again, none = await store.turns.begin_turn(
            THREAD, ChatMessage("user", "hello"), source="user", turn_id="t1"
        )
        state = await store.turns.load_thread(THREAD, interface="web")
    assert stored is not None and stored.message == ChatMessage("user", "hello")
    assert (turn.state, turn.user_message_id) == ("running", stored.id)
    assert none is None and again == turn  # a resubmission writes nothing
    assert raw(db_path, "SELECT count(*) FROM messages") == [(1,)]
    # A kill now leaves it running: the thread's next activation answers it.
    assert [(t.turn_id, t.state) for t in state.pending] == [("t1", "running")]
    assert [m.message.content for m in state.messages] == ["hello"]


async def test_finish_turn_stores_reply_state_and_outbox_together(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        turn, _ = await begin(store, THREAD, ChatMessage("user", "q"), source="user")
        finished = await store.turns.finish_turn(
            turn.turn_id, state="done", final=ChatMessage("assistant", "a"), outbox={"text": "a"}
        )
        pending = (await store.turns.load_thread(THREAD, interface="web")).pending
    assert finished.message is not None and finished.message.message.content == "a"
    assert raw(db_path, "SELECT state, finished_at IS NOT NULL FROM turns") == [("done", 1)]
    assert raw(db_path, "SELECT id, kind, payload FROM outbox WHERE delivered_at IS NULL") == [
        (finished.outbox_id, "reply", '{"text": "a"}')
    ]
    assert pending == ()


async def test_finish_turn_is_all_or_nothing(db_path: Path, store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        turn, _ = await begin(store, THREAD, ChatMessage("user", "q"), source="user")
        with pytest.raises(TypeError):  # the payload fails after the reply was inserted
            await store.turns.finish_turn(
                turn.turn_id,
                state="done",
                final=ChatMessage("assistant", "a"),
                outbox={"not json": object()},
            )
    assert raw(db_path, "SELECT role FROM messages") == [("user",)]
    assert raw(db_path, "SELECT state FROM turns") == [("running",)]
    assert raw(db_path, "SELECT count(*) FROM outbox") == [(0,)]


async def test_a_finished_turn_cannot_be_finished_again(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        turn, _ = await begin(store, THREAD, ChatMessage("user", "q"), source="user")
        await store.turns.finish_turn(
            turn.turn_id, state="done", final=ChatMessage("assistant", "a")
        )
        with pytest.raises(StoreError, match="done already"):
            await store.turns.finish_turn(
                turn.turn_id, state="done", final=ChatMessage("assistant", "b"), outbox={}
            )
    assert raw(db_path, "SELECT content FROM messages WHERE role = 'assistant'") == [("a",)]
    assert raw(db_path, "SELECT count(*) FROM outbox") == [(0,)]


async def test_pending_turns_survive_a_reopen_in_order(db_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        store = await ConversationStore.open(db_path)
        await store.turns.load_thread(THREAD, interface="web")
        await store.turns.load_thread(OTHER, interface="matrix")
        await begin(store, THREAD, ChatMessage("user", "one"), source="user")
        await store.turns.queue_turn(THREAD, ChatMessage("user", "two"), source="reminder")
        done, _ = await begin(store, OTHER, ChatMessage("user", "x"), source="user")
        await store.turns.finish_turn(done.turn_id, state="failed", final=None)
        await store.aclose()

        store = await ConversationStore.open(db_path)
        threads = await store.turns.threads_with_pending_turns()
        pending = (await store.turns.load_thread(THREAD, interface="web")).pending
        state = await store.turns.load_thread(THREAD, interface="web")
        await store.aclose()
    assert threads == (THREAD,)
    assert [(t.input.content, t.source, t.state) for t in pending] == [
        ("one", "user", "running"),
        ("two", "reminder", "queued"),
    ]
    assert state.pending == pending


# -- messages --------------------------------------------------------------------------------


async def test_tool_call_messages_round_trip_exactly(db_path: Path) -> None:
    messages = [
        ChatMessage("user", "list my files"),
        ChatMessage(
            "assistant",
            None,
            (ToolCall("c1", "shell", '{"command": "ls"}'), ToolCall("c2", "x", "{}")),
        ),
        ChatMessage("tool", "file.txt\nnotes é ✓", tool_call_id="c1", name="shell"),
        ChatMessage("tool", "", tool_call_id="c2", name="x"),
        ChatMessage("assistant", "You have file.txt."),
    ]
    with trio.fail_after(TIMEOUT):
        store = await ConversationStore.open(db_path)
        await store.turns.load_thread(THREAD, interface="web")
        for message in messages:
            await store.turns.append(
                THREAD, "t", message, meta={"duration_ms": 1.5, "outcome": "ok"}
            )
        await store.aclose()
        store = await ConversationStore.open(db_path)
        state = await store.turns.load_thread(THREAD, interface="web")
        await store.aclose()
    assert [m.message for m in state.messages] == messages
    assert state.messages[2].meta == {"duration_ms": 1.5, "outcome": "ok"}
    assert {m.turn_id for m in state.messages} == {"t"}


async def test_append_to_an_unknown_thread_is_refused(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StoreError, match="unknown thread"):
        await store.turns.append("web_nobody", None, ChatMessage("user", "x"))


async def test_new_epoch_archives_history_and_fails_pending_turns(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        await store.turns.append(THREAD, None, ChatMessage("user", "old"))
        await store.turns.set_summary(THREAD, "old summary", 1)
        await begin(store, THREAD, ChatMessage("user", "pending"), source="user")
        assert await store.turns.new_epoch(THREAD) == 1
        await store.turns.append(THREAD, None, ChatMessage("user", "new"))
        state = await store.turns.load_thread(THREAD, interface="web")
        threads = await store.turns.threads_with_pending_turns()
    assert [m.message.content for m in state.messages] == ["new"]
    assert (state.pending, state.summary, state.summary_upto, state.epoch) == ((), None, None, 1)
    assert threads == ()
    assert raw(db_path, "SELECT epoch, content FROM messages ORDER BY id") == [
        (0, "old"),
        (0, "pending"),
        (1, "new"),
    ]
    assert raw(db_path, "SELECT state FROM turns") == [("failed",)]


async def test_summary_is_stored_and_loaded(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        stored = await store.turns.append(THREAD, None, ChatMessage("user", "x"))
        await store.turns.set_summary(THREAD, "the gist", stored.id)
        state = await store.turns.load_thread(THREAD, interface="web")
    assert (state.summary, state.summary_upto) == ("the gist", stored.id)


async def test_a_summary_for_an_unknown_thread_is_refused(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StoreError, match="unknown thread"):
        await store.turns.set_summary("web_nobody", "gist", 1)


# -- rewinding (regenerate, edit) -----------------------------------------------------------


async def answered(
    store: ConversationStore, text: str, answer: str, *, turn_id: str, source: str = "user"
) -> Turn:
    """A turn of `thread` answered with `answer` (its reply waiting in the outbox)."""
    turn, _ = await begin(store, THREAD, ChatMessage("user", text), source=source, turn_id=turn_id)
    await store.turns.finish_turn(
        turn.turn_id, state="done", final=ChatMessage("assistant", answer), outbox={"text": answer}
    )
    return turn


async def test_a_rewind_supersedes_the_last_turn_and_queues_it_again(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "first", "one", turn_id="t1")
        last = await answered(store, "second", "two", turn_id="t2")
        await store.library.record(THREAD, "notice", "a notice after it", interface="web")
        rewound = await store.turns.rewind_turn(THREAD, "t2", new_turn_id="t3", text=None)
        state = await store.turns.load_thread(THREAD, interface="web")
        page = await store.library.history_page(THREAD)
        undelivered = await store.outbox.undelivered(THREAD)
    assert rewound.created and rewound.superseded_from == last.user_message_id
    assert (rewound.turn.turn_id, rewound.turn.state) == ("t3", "queued")
    assert rewound.turn.input == ChatMessage("user", "second")
    assert [m.message.content for m in state.messages] == ["first", "one"]
    assert [m.message.content for m in page] == ["first", "one"]
    assert [t.turn_id for t in state.pending] == ["t3"]
    assert [i.turn_id for i in undelivered] == ["t1"]  # the taken-back reply is never sent
    # Kept in the database, marked with the turn that took their place.
    assert raw(db_path, "SELECT content, superseded_by FROM messages ORDER BY id") == [
        ("first", None),
        ("one", None),
        ("second", "t3"),
        ("two", "t3"),
        ("a notice after it", "t3"),
    ]


async def test_an_edit_queues_the_new_text_and_renames_a_first_message(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "helo wrld", "?", turn_id="t1")
        rewound = await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text="hello world")
        summary = await store.library.thread_summary(THREAD)
        started = await store.turns.start_turn("t2")
        page = await store.library.history_page(THREAD)
    assert rewound.turn.input == ChatMessage("user", "hello world")
    assert summary is not None and summary.title == "hello world"
    assert [m.message.content for m in page] == [started.message.content] == ["hello world"]


async def test_a_rewind_is_idempotent_by_its_new_turn_id(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "q", "a", turn_id="t1")
        first = await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text=None)
        again = await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text=None)
    assert first.created and not again.created
    assert again.turn.turn_id == "t2" and again.superseded_from is None


async def test_a_superseded_message_is_not_found_by_search(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "tell me about zebras", "stripes", turn_id="t1")
        await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text="tell me about lions")
        assert await store.library.search("web", "zebras") == ()


async def test_a_rewind_with_nothing_to_take_back_is_refused(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(RewindRefused) as refused:
        await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text=None)
    assert refused.value.reason == "nothing_to_rewind"
    assert raw(db_path, "SELECT count(*) FROM turns") == [(0,)]


async def test_only_the_owners_last_turn_can_be_taken_back(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "first", "one", turn_id="t1")
        await answered(store, "second", "two", turn_id="t2")
        with pytest.raises(RewindRefused) as earlier:
            await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t3", text=None)
        await answered(
            store, "[a reminder]\nstretch", "stretch now", turn_id="r1", source="reminder"
        )
        with pytest.raises(RewindRefused) as reminder:
            await store.turns.rewind_turn(THREAD, "r1", new_turn_id="t3", text=None)
    assert (earlier.value.reason, reminder.value.reason) == ("not_last", "not_last")
    assert raw(db_path, "SELECT count(*) FROM messages WHERE superseded_by IS NOT NULL") == [(0,)]


async def test_a_turn_a_summary_covers_cannot_be_taken_back(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        turn = await answered(store, "old question", "old answer", turn_id="t1")
        assert turn.user_message_id is not None
        await store.turns.set_summary(THREAD, "the gist", turn.user_message_id)
        with pytest.raises(RewindRefused) as refused:
            await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text=None)
    assert refused.value.reason == "compacted"


async def test_rows_after_a_compaction_boundary_may_be_superseded(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        old = await answered(store, "old", "old answer", turn_id="t1")
        assert old.user_message_id is not None
        await store.turns.set_summary(THREAD, "the gist", old.user_message_id + 1)
        await answered(store, "new", "new answer", turn_id="t2")
        await store.turns.rewind_turn(THREAD, "t2", new_turn_id="t3", text=None)
        state = await store.turns.load_thread(THREAD, interface="web")
    assert state.summary == "the gist"
    assert [m.message.content for m in state.messages] == ["old", "old answer"]


# -- outbox and paging -----------------------------------------------------------------------


async def test_outbox_lists_undelivered_replies_until_marked_delivered(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await store.turns.load_thread(OTHER, interface="matrix")
        ids = []
        for thread_id, text in [(THREAD, "a"), (OTHER, "b"), (THREAD, "c")]:
            turn, _ = await begin(store, thread_id, ChatMessage("user", text), source="user")
            finished = await store.turns.finish_turn(
                turn.turn_id,
                state="done",
                final=ChatMessage("assistant", text),
                outbox={"text": text},
            )
            assert finished.outbox_id is not None
            ids.append(finished.outbox_id)
        of_thread = await store.outbox.undelivered(THREAD)
        await store.outbox.mark_delivered(ids[:1])
        await store.outbox.mark_delivered([])
        left = await store.outbox.undelivered()
        first = await store.outbox.undelivered(limit=1)
    assert [(i.payload["text"], i.kind, i.thread_id) for i in of_thread] == [
        ("a", "reply", THREAD),
        ("c", "reply", THREAD),
    ]
    assert [i.id for i in left] == ids[1:]
    assert [i.id for i in first] == ids[1:2]


async def test_undelivered_of_all_threads_does_not_walk_delivered_replies(
    store: ConversationStore,
) -> None:
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT 1"
    ).fetchall()
    assert any("USING INDEX outbox_undelivered" in row[-1] for row in plan), plan


async def test_history_page_pages_backwards_oldest_first(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        for n in range(10):
            await store.turns.append(THREAD, None, ChatMessage("user", str(n)))
        page = await store.library.history_page(THREAD, limit=4)
        older = await store.library.history_page(THREAD, before_id=page[0].id, limit=4)
        oldest = await store.library.history_page(THREAD, before_id=older[0].id, limit=4)
        beyond = await store.library.history_page(THREAD, before_id=oldest[0].id, limit=4)
    assert [m.message.content for m in page] == ["6", "7", "8", "9"]
    assert [m.message.content for m in older] == ["2", "3", "4", "5"]
    assert [m.message.content for m in oldest] == ["0", "1"]
    assert beyond == ()


async def test_history_page_shows_only_the_current_epoch(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        await store.turns.append(THREAD, None, ChatMessage("user", "before /new"))
        await store.turns.new_epoch(THREAD)
        await store.turns.append(THREAD, None, ChatMessage("user", "after /new"))
        page = await store.library.history_page(THREAD)
    assert [m.message.content for m in page] == ["after /new"]


# -- resource handling -----------------------------------------------------------------------


async def test_a_closed_store_refuses_work_and_closes_only_once(db_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        store = await ConversationStore.open(db_path)
        await store.aclose()
        await store.aclose()
        with pytest.raises(StoreError, match="closed"):
            await store.turns.load_thread(THREAD, interface="web")


async def test_statistics_count_reads_and_writes(db_path: Path, store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        before = store.statistics()
        await store.turns.append(THREAD, None, ChatMessage("user", "x"))
        await store.library.history_page(THREAD)
        await store.outbox.undelivered()
        after = store.statistics()
    assert after.path == str(db_path)
    assert (after.writes - before.writes, after.reads - before.reads) == (1, 2)


def test_the_package_exports_every_public_name_of_its_modules() -> None:
    import ganglion.store
    from ganglion.store import conversations, migrations, sqlite

    exported = set(ganglion.store.__all__)
    for module in (conversations, migrations, sqlite):
        assert set(module.__all__) <= exported, module.__name__
    assert all(hasattr(ganglion.store, name) for name in exported)


async def test_writes_that_arrive_together_share_one_commit(store: ConversationStore) -> None:
    other = "web_fedcba9876543210"
    await store.turns.load_thread(other, interface="web")
    before = store.statistics()
    queued: list[str] = []

    async def queue(n: int) -> None:
        turn, created = await store.turns.queue_turn(
            THREAD if n % 2 else other, ChatMessage("user", f"m{n}"), source="reminder"
        )
        assert created
        queued.append(turn.turn_id)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(queue, n)
    after = store.statistics()
    assert after.writes - before.writes == 40
    # the first write commits alone; the 39 that queued behind it share one commit
    assert after.commits - before.commits <= 3
    assert await store.turns.missing_turns(queued) == set()


async def test_a_failing_write_in_a_group_fails_alone(store: ConversationStore) -> None:
    results: dict[str, object] = {}

    async def queue(thread_id: str) -> None:
        try:
            results[thread_id] = await store.turns.queue_turn(
                thread_id, ChatMessage("user", "hi"), source="user", turn_id=f"{thread_id}/t"
            )
        except StoreError as exc:
            results[thread_id] = exc

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.turns.append, THREAD, None, ChatMessage("user", "busy"))
            await trio.testing.wait_all_tasks_blocked()  # the three below queue behind it
            for thread_id in (THREAD, "web_0000000000000bad", THREAD + "0"):
                nursery.start_soon(queue, thread_id)
    assert isinstance(results["web_0000000000000bad"], StoreError)  # unknown thread
    assert isinstance(results[THREAD + "0"], StoreError)
    assert await store.turns.missing_turns([f"{THREAD}/t"]) == set()


async def test_a_write_cancelled_before_its_group_started_never_happens(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.turns.append, THREAD, None, ChatMessage("user", "busy"))
            await trio.testing.wait_all_tasks_blocked()  # the append holds the connection
            with trio.CancelScope() as scope:
                scope.cancel()
                await store.turns.queue_turn(
                    THREAD, ChatMessage("user", "never"), source="user", turn_id="cancelled"
                )
    assert await store.turns.missing_turns(["cancelled"]) == {"cancelled"}


# -- versions of an answer (regenerate keeps the earlier ones) --------------------------------


async def regenerated(
    store: ConversationStore, turn_id: str, new_turn_id: str, answer: str
) -> None:
    """Regenerate the last turn `turn_id` as `new_turn_id`, answered with `answer`."""
    await store.turns.rewind_turn(THREAD, turn_id, new_turn_id=new_turn_id, text=None)
    await store.turns.start_turn(new_turn_id)
    await store.turns.finish_turn(
        new_turn_id, state="done", final=ChatMessage("assistant", answer), outbox={"text": answer}
    )


async def shown(store: ConversationStore) -> tuple[list[str | None], list[str | None]]:
    """What the model is given (the thread as loaded) and what the owner sees (history)."""
    state = await store.turns.load_thread(THREAD, interface="web")
    page = await store.library.history_page(THREAD)
    return [m.message.content for m in state.messages], [m.message.content for m in page]


async def test_regenerated_answers_are_versions_the_owner_flips_between(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "before", "ok", turn_id="t0")
        await answered(store, "q", "first", turn_id="t1")
        await regenerated(store, "t1", "t2", "second")
        await regenerated(store, "t2", "t3", "third")
        assert await store.turns.versions(THREAD, "t3") == ("t1", "t2", "t3")
        assert await shown(store) == (["before", "ok", "q", "third"],) * 2
        chosen = await store.turns.choose_version(THREAD, "t1")
        assert [m.message.content for m in chosen.messages] == ["q", "first"]
        assert await shown(store) == (["before", "ok", "q", "first"],) * 2
        assert await store.turns.versions(THREAD, "t1") == ("t1", "t2", "t3")
        assert (await store.turns.choose_version(THREAD, "t1")).superseded_from is None
        await store.turns.choose_version(THREAD, "t2")
        assert await shown(store) == (["before", "ok", "q", "second"],) * 2
        # The version shown is the last turn: regenerating it adds a version to the line.
        await regenerated(store, "t2", "t4", "fourth")
        assert await store.turns.versions(THREAD, "t4") == ("t1", "t2", "t3", "t4")
        assert await store.library.search("web", "first") == ()
    assert raw(db_path, "SELECT count(*) FROM messages WHERE superseded_by IS NULL") == [(4,)]


async def test_an_edit_starts_its_own_line_and_a_failed_answer_is_no_version(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "q", "first", turn_id="t1")
        await store.turns.rewind_turn(THREAD, "t1", new_turn_id="t2", text="q, edited")
        await store.turns.start_turn("t2")
        await store.turns.finish_turn("t2", state="done", final=ChatMessage("assistant", "a"))
        assert await store.turns.versions(THREAD, "t2") == ("t2",)
        await store.turns.rewind_turn(THREAD, "t2", new_turn_id="t3", text=None)
        await store.turns.start_turn("t3")
        await store.turns.finish_turn("t3", state="failed", final=None)
        await regenerated(store, "t3", "t4", "b")
        assert await store.turns.versions(THREAD, "t4") == ("t2", "t4")


async def test_a_version_is_chosen_only_for_the_last_turn_and_among_its_versions(
    db_path: Path, store: ConversationStore
) -> None:
    with trio.fail_after(TIMEOUT):
        await answered(store, "q", "first", turn_id="t1")
        await regenerated(store, "t1", "t2", "second")
        await answered(store, "other", "reply", turn_id="t5")
        before = raw(db_path, "SELECT id, superseded_by FROM messages ORDER BY id")
        assert await store.turns.versions(THREAD, "t2") == ("t2",)  # no longer the last
        with pytest.raises(RewindRefused) as not_last:
            await store.turns.choose_version(THREAD, "t1")
        await regenerated(store, "t5", "t6", "reply again")
        with pytest.raises(RewindRefused) as elsewhere:
            await store.turns.choose_version(THREAD, "t1")  # a version of another turn
        last = await store.turns.turn("t6")
        assert last is not None and last.user_message_id is not None
        await store.turns.set_summary(THREAD, "the gist", last.user_message_id)
        with pytest.raises(RewindRefused) as compacted:
            await store.turns.choose_version(THREAD, "t5")
    assert (not_last.value.reason, elsewhere.value.reason) == ("not_last", "not_last")
    assert compacted.value.reason == "compacted"
    assert raw(db_path, "SELECT id, superseded_by FROM messages ORDER BY id")[: len(before)] == [
        (i, s if i in (1, 2, 3, 4) else "t6") for i, s in before
    ]
