"""What `matrix.answers` keeps across restarts: one SQLite file beside nio's store,
`<store_dir>/answers.db` (owner-only), a row per fact, newest last.

    log = AnswerLog(store_dir)
    log.write(Fact("reply", turn_id, room_id, event_id))
    log.load()      # every fact, oldest first (a fact written again moves to the end)

Kinds: "message" (key: the message's first event; value: the turn answering it; extra:
its sender), "reply" (key: a turn; value: the bot event showing its answer),
"replaces" (key: a new turn; value: the turn whose reply it edits), "parts" (key: a
turn; value: the JSON list of the further events of its long reply), "said" (key: a
conversation; value: the JSON list of its context messages, [event, line]),
"preamble" (key: a message's first event; value: what the model read before its
words). `load` keeps the newest `KEPT` facts and forgets the rest.

Blocking: short SQLite transactions on one connection (WAL, `synchronous=NORMAL`: a
write needs no fsync; a kill loses nothing written, a power cut at worst the last
facts), one at a time; the async caller runs them in a worker thread. Error handling:
`sqlite3.Error` and `OSError` propagate.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["ANSWERS_FILE", "KEPT", "AnswerLog", "Fact"]

ANSWERS_FILE: Final = "answers.db"
KEPT: Final = 10_000
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS facts (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    room_id TEXT NOT NULL,
    value TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, key)
);
"""


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing `matrix.answers` knows (see the module docstring for the kinds)."""

    kind: str
    key: str
    room_id: str
    value: str
    extra: str = ""


class AnswerLog:
    """The facts of one bot account's store directory."""

    def __init__(self, store_dir: Path) -> None:
        self.path = store_dir / ANSWERS_FILE
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def write(self, fact: Fact) -> None:
        with self._lock, self._open() as db:
            db.execute(
                "INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?, ?)",
                (fact.kind, fact.key, fact.room_id, fact.value, fact.extra),
            )

    def load(self) -> list[Fact]:
        if not self.path.exists():
            return []
        with self._lock, self._open() as db:
            db.execute(
                "DELETE FROM facts WHERE rowid <= (SELECT MAX(rowid) FROM facts) - ?", (KEPT,)
            )
            rows = db.execute(
                "SELECT kind, key, room_id, value, extra FROM facts ORDER BY rowid"
            ).fetchall()
        return [Fact(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self) -> sqlite3.Connection:
        """The connection, opened (and the file made, owner-only) on first use; as a
        context manager it is one transaction."""
        if self._db is None or not self.path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            if self._db is not None:
                self._db.close()
            self._db = db
        return self._db
