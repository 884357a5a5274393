"""The inbox (`ganglion.inbox`): what the owner sent, kept per conversation, owner-only,
under names no sender can turn into a path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ganglion.inbox import (
    INBOX_DIR,
    InboxError,
    conversation_segment,
    remove_conversation,
    safe_filename,
    store_file,
)


@pytest.mark.parametrize(
    ("thread_id", "segment"),
    [
        ("!abc:example.org", "%21abc%3Aexample.org"),
        ("!abc:example.org/$root", "%21abc%3Aexample.org%2F%24root"),  # an Element thread
        ("web_0123abcd", "web_0123abcd"),
        ("system:reminders", "system%3Areminders"),
        ("..", "%2E."),
        ("../../etc", "%2E.%2F..%2Fetc"),
        ("!ü/x", "%21%C3%BC%2Fx"),
    ],
)
def test_a_conversation_is_one_safe_path_segment(thread_id: str, segment: str) -> None:
    assert conversation_segment(thread_id) == segment
    assert "/" not in segment and not segment.startswith(".")


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("letter.jpg", "letter.jpg"),
        ("../../.ssh/authorized_keys", "authorized_keys"),
        ("C:\\Users\\me\\scan.pdf", "scan.pdf"),
        ("bad\x00name\u202e.txt", "badname.txt"),
        ("", "file"),
        ("...", "file"),
        (None, "file"),
        ("a" * 300 + ".ogg", "a" * 96 + ".ogg"),
    ],
)
def test_a_sent_name_is_made_safe_and_keeps_its_extension(name: str | None, kept: str) -> None:
    assert safe_filename(name) == kept


async def test_files_are_kept_owner_only_and_never_overwrite_each_other(tmp_path: Path) -> None:
    first = await store_file(tmp_path, "!room:hs", "scan.png", "image/png", b"one")
    second = await store_file(tmp_path, "!room:hs", "scan.png", "image/png", b"two")
    assert first.path != second.path
    assert first.path.startswith(f"{INBOX_DIR}/%21room%3Ahs/") and first.path.endswith("-scan.png")
    assert (tmp_path / first.path).read_bytes() == b"one"
    assert (tmp_path / second.path).read_bytes() == b"two"
    assert stat.S_IMODE(os.stat(tmp_path / first.path).st_mode) == 0o600
    assert "scan.png (image/png, 3 bytes), saved as inbox/" in first.described()


async def test_a_file_past_the_quota_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(InboxError, match="max_data_bytes"):
        await store_file(
            tmp_path, "web_aa", "big.bin", "application/octet-stream", b"x" * 10, room_left=9
        )
    assert not (tmp_path / INBOX_DIR).exists()


async def test_a_link_planted_for_the_inbox_is_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / INBOX_DIR).symlink_to(elsewhere)
    with pytest.raises(InboxError):
        await store_file(data, "web_aa", "x.txt", "text/plain", b"x")
    assert list(elsewhere.iterdir()) == []


async def test_removing_a_conversation_removes_its_inbox_only(tmp_path: Path) -> None:
    await store_file(tmp_path, "web_aa", "a.txt", "text/plain", b"a")
    await store_file(tmp_path, "web_aa", "b.txt", "text/plain", b"b")
    kept = await store_file(tmp_path, "web_bb", "c.txt", "text/plain", b"c")
    assert await remove_conversation(tmp_path, "web_aa") == 2
    assert not (tmp_path / INBOX_DIR / "web_aa").exists()
    assert (tmp_path / kept.path).exists()
    assert await remove_conversation(tmp_path, "web_never") == 0
