"""What every Ganglion SQLite store shares: opening safely, and running its blocking work
off the event loop.

A store opens one connection (WAL, `synchronous=FULL`, foreign keys on), checks that the
file is really its own and intact before writing anything (a foreign, corrupt or newer
database is refused with `StoreError` and left untouched), then applies its migrations.

Resource handling: all database work runs in a worker thread, one call at a time (a
`CapacityLimiter(1)` per store, so the single connection is never used concurrently).
Each write is atomic. Writes that queue up while the connection is busy are committed
together (group commit): the next writer to get the connection takes every write
waiting and runs them in one transaction, so a burst (forty reminders coming due, many
threads storing their turns) costs one fsync, not one per write, and every caller still
returns only once its own write is on disk. If any write of a group fails, the group is
rolled back and its writes are run again one transaction each, so one bad write fails
alone (write functions touch only the database, so running one again is safe).

A call cancelled while its work is in the thread waits for that work to finish, so a
transaction is always committed or rolled back whole, never abandoned; a write cancelled
while it waits for the connection either never happens or, if another writer's group
took it already, happens whole. `aclose` closes the connection; it may be called more
than once.

Error handling: SQLite errors are raised as `StoreError` (with the database path and the
original exception chained), so callers handle one exception type.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlite_utils
import trio

from ganglion.errors import GanglionError
from ganglion.store.migrations import MigrationError, Migrations

__all__ = ["SQLiteStore", "StoreError", "StoreStatistics"]

T = TypeVar("T")


class StoreError(GanglionError):
    """A store cannot be used, or an operation on it failed; the message says why."""


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """`writes` counts the write calls, `commits` the transactions they took."""

    path: str
    reads: int
    writes: int
    commits: int


class _Write:
    """One queued write and, once its group ran, what it returned or raised."""

    __slots__ = ("error", "finished", "fn", "value")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.finished = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def _check_integrity(db: sqlite_utils.Database) -> None:
    # A damaged page deep in the file passes the schema check and would only fail (or,
    # worse, read as missing rows) later. quick_check reads every page without writing;
    # it costs a few milliseconds per megabyte, once at start-up.
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        raise MigrationError(f"the database is corrupt ({'; '.join(problems)})")


class SQLiteStore:
    """Base class: subclasses set `migrations` and `description`."""

    migrations: Migrations
    description = "store"

    def __init__(self, path: Path, db: sqlite_utils.Database) -> None:
        self.path = path
        self._db = db
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False
        self._reads = 0
        self._writes = 0
        self._commits = 0
        self._waiting: list[_Write] = []

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
            if existed:  # refuse before the pragmas below write anything
                cls.migrations.check(db)
                _check_integrity(db)
            db.enable_wal()
            if db.journal_mode != "wal":
                raise MigrationError("the file system does not support WAL mode")
            # NORMAL would let a power cut undo commits not yet checkpointed; the
            # write-ahead rule (a user message is on disk before the model is called)
            # needs each commit synced.
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            cls.migrations.apply(db)
        except (MigrationError, sqlite3.DatabaseError) as exc:
            conn.close()
            raise StoreError(f"{path}: not a usable Ganglion {cls.description}: {exc}") from None
        return db

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shielded: the connection is closed (and the WAL checkpointed) even when the
        # caller is being cancelled; it waits only for the one short call in progress.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._db.close, limiter=self._limiter)

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            path=str(self.path), reads=self._reads, writes=self._writes, commits=self._commits
        )

    async def _run(self, fn: Callable[[], T], *, limiter: bool = True) -> T:
        if self._closed:
            raise StoreError(f"{self.path}: the {self.description} is closed")
        try:
            if limiter:
                return await trio.to_thread.run_sync(fn, limiter=self._limiter)
            return await trio.to_thread.run_sync(fn)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{self.path}: {self.description} error: {exc}")

    async def _read(self, fn: Callable[[], T]) -> T:
        self._reads += 1
        return await self._run(fn)

    async def _write(self, fn: Callable[[], T]) -> T:
        """Run `fn` atomically: all its statements commit together, or none. Returns once
        it is committed (possibly in one transaction with other writes waiting)."""
        self._writes += 1
        write = _Write(fn)
        self._waiting.append(write)
        try:
            async with self._limiter:
                if not write.finished.is_set():  # nobody took it: lead a group
                    group, self._waiting = self._waiting, []
                    try:
                        await self._run(partial(self._commit_group, group), limiter=False)
                    finally:
                        for member in group:
                            member.finished.set()
        except trio.Cancelled:
            if write in self._waiting:
                self._waiting.remove(write)  # never started
            else:
                with trio.CancelScope(shield=True):  # in a group in flight: let it end
                    await write.finished.wait()
            raise
        if write.error is not None:
            if isinstance(write.error, sqlite3.Error):
                raise self._error(write.error) from write.error
            raise write.error
        value: T = write.value
        return value

    def _commit_group(self, group: list[_Write]) -> None:
        if len(group) > 1:
            try:
                with self._db.atomic():
                    values = [write.fn() for write in group]
            except Exception:
                pass  # rolled back whole: run them one by one so a bad write fails alone
            else:
                self._commits += 1
                for write, value in zip(group, values, strict=True):
                    write.value = value
                return
        for write in group:
            try:
                with self._db.atomic():
                    write.value = write.fn()
                self._commits += 1
            except Exception as exc:
                write.error = exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self._db.query(sql, params))
