"""`LeanStore` keeps what nio's own store keeps: the sync token, the encrypted rooms, read
back by a fresh nio store on the same file; and which syncs' tokens are kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nio.crypto import OlmAccount
from nio.store import DefaultStore

from ganglion.matrix.niostore import LeanStore
from ganglion.matrix.sync import _carries_events

USER, DEVICE, KEY = "@bot:hs.example", "BOTDEVICE", "pickle key"


def test_sync_tokens_and_encrypted_rooms_read_back_by_nio(tmp_path: Path) -> None:
    store = LeanStore(USER, DEVICE, str(tmp_path), KEY)
    store.save_account(OlmAccount())
    store.save_sync_token("s1")
    store.save_sync_token("s2")  # the account row remembered: one statement
    store.save_encrypted_rooms(set())
    store.save_encrypted_rooms({"!a:hs.example"})
    store.save_sync_token("s3")
    again = DefaultStore(USER, DEVICE, str(tmp_path), KEY)
    assert again.load_sync_token() == "s3"
    assert again.load_encrypted_rooms() == {"!a:hs.example"}
    database = next(tmp_path.glob("*.db"))
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM synctokens").fetchone() == (1,)


def test_a_store_without_an_account_yet_saves_through_nio(tmp_path: Path) -> None:
    store = LeanStore(USER, DEVICE, str(tmp_path), KEY)
    store.save_encrypted_rooms(set())  # nothing to save, no account needed
    store.save_account(OlmAccount())
    store.save_sync_token("first")
    assert DefaultStore(USER, DEVICE, str(tmp_path), KEY).load_sync_token() == "first"


def sync(*, timeline: tuple[str, ...] = (), to_device: int = 0, changed: int = 0) -> Any:
    """A sync response as far as `_carries_events` reads it: one joined room whose timeline
    has events from `timeline`'s senders."""
    room = SimpleNamespace(
        state=[], timeline=SimpleNamespace(events=[SimpleNamespace(sender=s) for s in timeline])
    )
    return SimpleNamespace(
        rooms=SimpleNamespace(invite={}, leave={}, join={"!a:hs.example": room}),
        to_device_events=[object()] * to_device,
        device_list=SimpleNamespace(changed=["@x:hs"] * changed, left=[]),
    )


def test_the_token_is_kept_for_a_sync_that_brought_what_must_not_come_twice() -> None:
    assert not _carries_events(sync(), USER)  # typing, receipts: nothing
    assert not _carries_events(sync(timeline=(USER, USER)), USER)  # the bot's own replies
    assert _carries_events(sync(timeline=(USER, "@owner:hs.example")), USER)
    assert _carries_events(sync(to_device=1), USER)
    assert _carries_events(sync(changed=1), USER)
