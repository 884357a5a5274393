"""Schema migrations: an ordered list of small functions, each applied once, atomically.

    migrations = Migrations("conversation")

    @migrations.migration
    def create_threads(db: sqlite_utils.Database) -> None:
        db["threads"].create({...}, pk="thread_id")

Applied migrations are recorded by name in `_migrations`. Opening a database that is not
ours (tables but no `_migrations`), was written by a newer Ganglion (names we do not
know), or is not SQLite at all raises `MigrationError` before anything is written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

__all__ = ["MigrationError", "Migrations"]

Migration = Callable[[sqlite_utils.Database], None]


class MigrationError(Exception):
    """The database cannot be used by this version; the message says why."""


class Migrations:
    def __init__(self, name: str) -> None:
        self.name = name
        self._steps: list[tuple[str, Migration]] = []

    def migration(self, fn: Migration) -> Migration:
        self._steps.append((fn.__name__, fn))
        return fn

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._steps)

    def check(self, db: sqlite_utils.Database) -> set[str]:
        """Verify, without writing, that `db` is ours and not newer; return the names
        already applied."""
        try:
            tables = set(db.table_names())
        except sqlite3.DatabaseError as exc:
            raise MigrationError(f"not a usable SQLite database ({exc})") from None
        if tables and "_migrations" not in tables:
            raise MigrationError(
                f"it holds tables that are not Ganglion's {self.name} store "
                f"({', '.join(sorted(tables)[:5])})"
            )
        done = (
            {row["name"] for row in db.table("_migrations").rows}
            if "_migrations" in tables
            else set()
        )
        unknown = done - set(self.names)
        if unknown:
            raise MigrationError(
                f"it was written by a newer version of Ganglion (unknown migrations: "
                f"{', '.join(sorted(unknown))})"
            )
        return done

    def apply(self, db: sqlite_utils.Database) -> list[str]:
        """Apply the pending migrations, each in its own transaction; return their names."""
        done = self.check(db)
        applied = []
        for name, fn in self._steps:
            if name in done:
                continue
            with db.atomic():
                fn(db)
                db.table("_migrations").insert({"name": name, "applied_at": time.time()}, pk="name")
            applied.append(name)
        return applied
