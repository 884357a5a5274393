"""What every Ganglion SQLite store shares: opening safely, and running its blocking work
off the event loop.

A store opens one connection (WAL, `synchronous=FULL`, foreign keys on), checks that the
file is really its own before writing anything (a foreign, corrupt or newer database is
refused with `StoreError` and left untouched), then applies its migrations. All work
runs in a worker thread, one batch at a time (a `CapacityLimiter(1)` per store); each
write is one short transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlite_utils
import trio

from ganglion.store.migrations import MigrationError, Migrations

__all__ = ["SQLiteStore", "StoreError", "StoreStatistics"]

T = TypeVar("T")


class StoreError(Exception):
    """A store cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    path: str
    reads: int
    writes: int


class SQLiteStore:
    """Base class: subclasses set `migrations` and `description`."""

    migrations: Migrations
    description = "store"

    def __init__(self, path: Path, db: sqlite_utils.Database) -> None:
        self.path = path
        self._db = db
        self._limiter = trio.CapacityLimiter(1)
        self._reads = 0
        self._writes = 0

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating and migrating) the store at `path`.

        Error handling: `StoreError` for a file that is not a usable store of this kind;
        the file is left as it was.
        """
        return cls(path, await trio.to_thread.run_sync(cls.connect, path))

    @classmethod
    def connect(cls, path: Path) -> sqlite_utils.Database:
        """Open the database synchronously (also used by command-line tools)."""
        existed = path.exists()
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the {cls.description}: {exc}") from None
        db = sqlite_utils.Database(conn)
        try:
            if existed:
                cls.migrations.check(db)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            cls.migrations.apply(db)
        except (MigrationError, sqlite3.DatabaseError) as exc:
            conn.close()
            raise StoreError(f"{path}: not a usable Ganglion {cls.description}: {exc}") from None
        return db

    async def aclose(self) -> None:
        await self._run(self._db.close)

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(str(self.path), self._reads, self._writes)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _read(self, fn: Callable[[], T]) -> T:
        self._reads += 1
        return await self._run(fn)

    async def _write(self, fn: Callable[[], T]) -> T:
        self._writes += 1

        def atomically() -> T:
            with self._db.atomic():
                return fn()

        return await self._run(atomically)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql, params)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
