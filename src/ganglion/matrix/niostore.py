"""nio's encryption store with less work per sync (issue 35).

nio's `DefaultStore` looks up the account row again in every call (a query per save),
and nio asks it after every sync to save the sync's newly encrypted rooms, an empty set
nearly always. `LeanStore` remembers the account row once it exists (it is only used as
a key: nio writes the account by user and device id) and saves no empty set. Everything
else is nio's.
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

    def save_encrypted_rooms(self, rooms: Any) -> None:
        if rooms:
            super().save_encrypted_rooms(rooms)
