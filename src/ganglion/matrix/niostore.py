"""nio's encryption store with less work per sync (issue 35).

nio's `DefaultStore` binds its dozen models to the database for every call (peewee walks
their graph each time) and looks up the account row again (a query per save), and nio
asks it after every sync to save the sync's newly encrypted rooms, an empty set nearly
always. `LeanStore` remembers the account row once it exists (it is only used as a key:
nio writes the account by user and device id), saves no empty set, and saves a sync
token with the one statement nio's would make. Everything else is nio's.
"""

from __future__ import annotations

from typing import Any

from nio.store import DefaultStore

__all__ = ["LeanStore"]


class LeanStore(DefaultStore):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._account_row: Any = None
        super().__init__(*args, **kwargs)

    def _get_account(self) -> Any:
        if self._account_row is None:
            self._account_row = super()._get_account()
        return self._account_row

    def save_sync_token(self, token: str) -> None:
        if self._account_row is None:
            super().save_sync_token(token)  # finds the account row, remembered from then on
            return
        self.database.execute_sql(
            'INSERT OR REPLACE INTO "synctokens" ("token", "account_id") VALUES (?, ?)',
            (token, self._account_row.id),
        )

    def save_encrypted_rooms(self, rooms: Any) -> None:
        if rooms:
            super().save_encrypted_rooms(rooms)
