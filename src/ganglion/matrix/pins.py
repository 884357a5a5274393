"""The pinned identities: the master key the bot first saw for each user, kept on disk.

    pins = PinStore(store_dir)
    pins.pin_first("@me:example.org", master)     # trust on first use: keeps the first
    pins.pin("@me:example.org", new_master)       # `ganglion matrix trust`: replaces it
    pins.all()                                    # {user: master}
    pins.first_notice("@me:example.org", subject) # True once per subject

One SQLite file beside nio's encryption store, `<store_dir>/trusted_identities.db`,
owner-only (the directory is 0700, the file 0600). SQLite, not JSON, because two
processes write it: the daemon pins on first use while `ganglion matrix trust` pins a
new identity, and each write is one transaction, so neither loses the other's. The
daemon reads the pins afresh for each decision (one small query), so a pin made by the
command counts from the next message on, with nothing to signal.

`notices` records what the owner was told about (a device, an identity), so each
refusal is announced once, across restarts too; pinning a user forgets their notices,
so a later change is announced again.

Blocking: short SQLite transactions; the async caller runs them in a worker thread.

Error handling: `sqlite3.Error` and `OSError` propagate (the caller turns them into
`MatrixSetupError`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Final

__all__ = ["PINS_FILE", "PinStore"]

PINS_FILE: Final = "trusted_identities.db"
BUSY_TIMEOUT_SECONDS: Final = 5.0
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pins (
    user_id TEXT PRIMARY KEY,
    master_key TEXT NOT NULL,
    pinned_at REAL NOT NULL,
    how TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    told_at REAL NOT NULL,
    PRIMARY KEY (user_id, subject)
);
"""


class PinStore:
    """The pins of one bot account's store directory (see the module docstring)."""

    def __init__(self, store_dir: Path) -> None:
        self.path = store_dir / PINS_FILE

    def all(self) -> dict[str, str]:
        """Every pinned master key, by user."""
        if not self.path.exists():
            return {}
        with self._open() as db:
            return dict(db.execute("SELECT user_id, master_key FROM pins").fetchall())

    def get(self, user_id: str) -> str | None:
        return self.all().get(user_id)

    def pin_first(self, user_id: str, master_key: str) -> str:
        """Pin `master_key` unless a key is pinned for `user_id` already; returns the
        key pinned now (the first one wins, whichever process wrote it)."""
        with self._open() as db, db:
            db.execute(
                "INSERT OR IGNORE INTO pins VALUES (?, ?, ?, 'first use')",
                (user_id, master_key, time.time()),
            )
            row = db.execute("SELECT master_key FROM pins WHERE user_id = ?", (user_id,))
            return str(row.fetchone()[0])

    def pin(self, user_id: str, master_key: str) -> str | None:
        """Pin `master_key` for `user_id`, replacing what was; returns the key it
        replaced (None: none). The user's notices are forgotten."""
        with self._open() as db, db:
            row = db.execute("SELECT master_key FROM pins WHERE user_id = ?", (user_id,))
            previous = row.fetchone()
            db.execute(
                "INSERT OR REPLACE INTO pins VALUES (?, ?, ?, 'operator')",
                (user_id, master_key, time.time()),
            )
            db.execute("DELETE FROM notices WHERE user_id = ?", (user_id,))
        return str(previous[0]) if previous is not None else None

    def first_notice(self, user_id: str, subject: str) -> bool:
        """Record that the owner is told about `subject`; False when they were already."""
        with self._open() as db, db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO notices VALUES (?, ?, ?)", (user_id, subject, time.time())
            )
            return cursor.rowcount == 1

    def _open(self) -> closing[sqlite3.Connection]:
        # Made owner-only before SQLite opens it: SQLite would follow the umask.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        db.executescript(SCHEMA)
        return closing(db)
