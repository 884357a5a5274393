"""Schema migrations: an ordered list of small functions, each applied once, atomically.

    migrations = Migrations("conversation")

    @migrations.migration
    def create_threads(db: sqlite_utils.Database) -> None:
        db.table("threads").create({...}, pk="thread_id")

A migration is never edited once released: a schema change is a new function appended to
the list. Each pending migration runs in its own transaction together with the row that
records it in `_migrations` (name, applied_at), so a migration that fails leaves neither
half a schema nor a record behind, and the next start tries it again.

Error handling: `check` (also run first by `apply`) refuses, before anything is written,
a database that is not SQLite, holds tables but no `_migrations` (some other program's
database), or records migrations this code does not know (a newer Ganglion, or another
kind of store); it raises `MigrationError` saying which.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

from ganglion.errors import GanglionError

__all__ = ["Migration", "MigrationError", "Migrations"]

log = logging.getLogger(__name__)

Migration = Callable[[sqlite_utils.Database], None]

TABLE = "_migrations"


class MigrationError(GanglionError):
    """The database cannot be used by this version; the message says why."""


class Migrations:
    """The ordered migrations of one kind of store; `name` appears in error messages."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._steps: list[tuple[str, Migration]] = []

    def migration(self, fn: Migration) -> Migration:
        """Decorator: append `fn` to the list, under its function name."""
        if fn.__name__ in self.names:
            raise ValueError(f"{self.name}: a migration named {fn.__name__!r} exists already")
        self._steps.append((fn.__name__, fn))
        return fn

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._steps)

    def check(self, db: sqlite_utils.Database) -> set[str]:
        """Verify, without writing, that `db` is ours and not newer; return the names of
        the migrations already applied."""
        try:
            tables = set(db.table_names())
        except sqlite3.DatabaseError as exc:
            raise MigrationError(f"not a usable SQLite database ({exc})") from None
        if tables and TABLE not in tables:
            raise MigrationError(
                f"it holds tables that are not Ganglion's {self.name} store "
                f"({', '.join(sorted(tables)[:5])}) and no {TABLE} table"
            )
        done = {row["name"] for row in db.table(TABLE).rows} if TABLE in tables else set()
        unknown = done - set(self.names)
        if unknown and not (done & set(self.names)):
            raise MigrationError(
                f"it is not Ganglion's {self.name} store (its migrations: "
                f"{', '.join(sorted(unknown))})"
            )
        if unknown:
            raise MigrationError(
                f"it was written by a newer version of Ganglion (unknown migrations: "
                f"{', '.join(sorted(unknown))})"
            )
        return done

    def apply(self, db: sqlite_utils.Database) -> list[str]:
        """Apply the pending migrations in order, each in its own transaction; return the
        names applied (empty when the database was up to date)."""
        done = self.check(db)
        applied = []
        for name, fn in self._steps:
            if name in done:
                continue
            with db.atomic():
                db.table(TABLE).create(
                    {"name": str, "applied_at": float}, pk="name", if_not_exists=True
                )
                fn(db)
                db.table(TABLE).insert({"name": name, "applied_at": time.time()})
            log.info("%s store: applied migration %s", self.name, name)
            applied.append(name)
        return applied
