"""The conversation database's schema: the migrations that build it, in order.

See `ganglion.store.conversations` for what each table holds.
"""

from __future__ import annotations

import sqlite_utils

from ganglion.store.migrations import Migrations
from ganglion.store.rows import title

__all__ = ["migrations"]

# What the search index holds: the words of the conversation, not tool output.
_SEARCHED = "new.kind IS NULL AND new.role IN ('user', 'assistant') AND new.content IS NOT NULL"

migrations = Migrations("conversation")

_FIRST_TITLE_CHARS = 80  # what the first titles were cut to (`display_rows_titles_and_search`)


@migrations.migration
def create_tables(db: sqlite_utils.Database) -> None:
    db.table("threads").create(
        {
            "thread_id": str,
            "interface": str,
            "created_at": float,
            "epoch": int,
            "summary": str,
            "summary_upto": int,
        },
        pk="thread_id",
        not_null={"interface", "created_at", "epoch"},
        defaults={"epoch": 0},
    )
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            thread_id TEXT NOT NULL REFERENCES threads(thread_id),
            epoch INTEGER NOT NULL,
            turn_id TEXT,
            role TEXT NOT NULL,
            content TEXT,
            tool_calls TEXT,
            tool_call_id TEXT,
            name TEXT,
            created_at REAL NOT NULL,
            meta TEXT
        )"""
    )
    db.execute("CREATE INDEX messages_by_thread ON messages (thread_id, epoch, id)")
    db.table("turns").create(
        {
            "turn_id": str,
            "thread_id": str,
            "epoch": int,
            "source": str,
            "state": str,
            "input": str,
            "user_message_id": int,
            "created_at": float,
            "finished_at": float,
        },
        pk="turn_id",
        not_null={"thread_id", "epoch", "source", "state", "input", "created_at"},
        foreign_keys=[("thread_id", "threads", "thread_id")],
    )
    db.execute(
        "CREATE INDEX turns_unfinished ON turns (thread_id, created_at) WHERE state IN ('queued', 'running')"
    )
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            thread_id TEXT NOT NULL,
            turn_id TEXT,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            delivered_at REAL
        )"""
    )
    db.execute(
        "CREATE INDEX outbox_undelivered ON outbox (thread_id, id) WHERE delivered_at IS NULL"
    )


@migrations.migration
def index_undelivered_outbox(db: sqlite_utils.Database) -> None:
    # `undelivered()` of all threads orders by id; without this index SQLite walks the
    # whole outbox in id order, every reply ever delivered included.
    db.execute("CREATE INDEX outbox_undelivered_all ON outbox (id) WHERE delivered_at IS NULL")


@migrations.migration
def display_rows_titles_and_search(db: sqlite_utils.Database) -> None:
    # Rows shown to the owner but never to the model (`kind`: a command, its output, a
    # notice, a failed turn's message), in the same id order as the conversation.
    db.execute("ALTER TABLE messages ADD COLUMN kind TEXT")
    db.execute("CREATE INDEX messages_by_turn ON messages (turn_id)")
    db.execute("ALTER TABLE threads ADD COLUMN title TEXT")
    db.execute("ALTER TABLE threads ADD COLUMN custom_title TEXT")
    db.execute("ALTER TABLE threads ADD COLUMN updated_at REAL")
    db.execute("ALTER TABLE threads ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE threads ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE threads SET updated_at = (SELECT MAX(created_at) FROM messages "
        "WHERE messages.thread_id = threads.thread_id)"
    )
    db.execute(
        "UPDATE threads SET title = (SELECT substr(json_extract(t.input, '$.content'), 1, ?) FROM turns t "
        "WHERE t.thread_id = threads.thread_id AND t.source = 'user' ORDER BY t.created_at "
        "LIMIT 1)",
        (_FIRST_TITLE_CHARS,),
    )
    db.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    db.execute(
        f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN {_SEARCHED} "
        "BEGIN INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END"
    )
    db.execute(
        f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages "
        f"WHEN {_SEARCHED.replace('new.', 'old.')} BEGIN INSERT INTO messages_fts "
        "(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END"
    )
    db.execute(
        "INSERT INTO messages_fts (rowid, content) SELECT id, content FROM messages "
        f"WHERE {_SEARCHED.replace('new.', '')}"
    )


@migrations.migration
def superseded_messages(db: sqlite_utils.Database) -> None:
    # The rows of a turn the owner took back (regenerate, edit) stay, named by the turn
    # that replaced them, and are left out of everything read for the model or the owner.
    db.execute("ALTER TABLE messages ADD COLUMN superseded_by TEXT")


# What the search index holds since attachments came: the words of the conversation and
# the names of the files that came with them.
_SEARCHED_NOW = (
    "new.kind IS NULL AND new.role IN ('user', 'assistant', 'tool') AND (new.content IS NOT NULL "
    "AND new.role != 'tool' OR new.attachments IS NOT NULL)"
)
_NAMES = (
    "(SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each({row}.attachments))"
)


@migrations.migration
def attachments(db: sqlite_utils.Database) -> None:
    # A message's files (JSON list of `transcript.Attachment`): references to the inbox,
    # stored with the message and kept through compaction. The search index gets a column
    # of their names, and holds its own copy of both (a tool's message is searched by the
    # file it sent, never by its output), so it is rebuilt as a table of its own.
    db.execute("ALTER TABLE messages ADD COLUMN attachments TEXT")
    db.execute("DROP TRIGGER messages_fts_insert")
    db.execute("DROP TRIGGER messages_fts_delete")
    db.execute("DROP TABLE messages_fts")
    db.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(content, names, "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    searched_content = "CASE WHEN new.role = 'tool' THEN NULL ELSE new.content END"
    db.execute(
        f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN {_SEARCHED_NOW} "
        f"BEGIN INSERT INTO messages_fts (rowid, content, names) VALUES (new.id, "
        f"{searched_content}, {_NAMES.format(row='new')}); END"
    )
    db.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages "
        "BEGIN DELETE FROM messages_fts WHERE rowid = old.id; END"
    )
    # A voice message's text is its transcript, written once it is heard.
    db.execute(
        f"CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages "
        f"WHEN {_SEARCHED_NOW} BEGIN DELETE FROM messages_fts WHERE rowid = old.id; "
        f"INSERT INTO messages_fts (rowid, content, names) VALUES (new.id, {searched_content}, "
        f"{_NAMES.format(row='new')}); END"
    )
    db.execute(
        "INSERT INTO messages_fts (rowid, content) SELECT id, content FROM messages "
        f"WHERE {_SEARCHED.replace('new.', '')}"
    )


@migrations.migration
def usage_and_models(db: sqlite_utils.Database) -> None:
    # What each model call cost (`store.usage`): kept when its conversation is deleted,
    # since the tokens were spent. `day` is the owner's calendar day, for the budgets.
    db.execute(
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            day TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            source TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt INTEGER NOT NULL,
            completion INTEGER NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0,
            estimated INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            currency TEXT
        )"""
    )
    db.execute("CREATE INDEX usage_by_day ON usage (day)")
    db.execute("CREATE INDEX usage_by_thread ON usage (thread_id)")
    # Tokens the owner allowed beyond `budgets.daily_tokens` for one day (`/budget +N`).
    db.execute("CREATE TABLE allowances (day TEXT PRIMARY KEY, tokens INTEGER NOT NULL)")
    # The model the owner chose for a conversation (`/model NAME`); NULL: the main one.
    db.execute("ALTER TABLE threads ADD COLUMN model TEXT")


@migrations.migration
def approvals(db: sqlite_utils.Database) -> None:
    # A tool call waiting for the owner's yes, and what became of it (`store.approvals`):
    # written before the question is asked, decided before the call runs.
    db.execute(
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            thread_id TEXT NOT NULL,
            turn_id TEXT NOT NULL,
            call_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            asked_in TEXT NOT NULL,
            why TEXT NOT NULL,
            expires_at REAL,
            state TEXT NOT NULL,
            outcome TEXT,
            decided_by TEXT,
            interface TEXT,
            created_at REAL NOT NULL,
            decided_at REAL,
            UNIQUE (turn_id, call_id)
        )"""
    )
    db.execute("CREATE INDEX approvals_open ON approvals (asked_in) WHERE state = 'asked'")


@migrations.migration
def answer_versions(db: sqlite_utils.Database) -> None:
    # A regenerated turn names the first turn of its answers (`store.turns`: the owner
    # flips between the versions; the rows of those not chosen are superseded).
    db.execute("ALTER TABLE turns ADD COLUMN version_of TEXT")
    db.execute("CREATE INDEX turns_versions ON turns (version_of) WHERE version_of IS NOT NULL")


@migrations.migration
def generated_titles(db: sqlite_utils.Database) -> None:
    # Where a conversation's title stands (`store.titles`): NULL, none asked for yet;
    # 'asked' (the request is made, or was cut off by a restart: the title stays as it
    # is), 'generated' or 'fallback' (the model gave none). The conversations before it
    # keep their titles, cleaned as titles are now, and are never asked about.
    db.execute("ALTER TABLE threads ADD COLUMN title_state TEXT")
    db.execute("UPDATE threads SET title_state = 'kept'")
    for row in db.execute(
        "SELECT thread_id, title FROM threads WHERE title IS NOT NULL"
    ).fetchall():
        db.execute("UPDATE threads SET title = ? WHERE thread_id = ?", (title(row[1]), row[0]))
