"""`ganglion.owned`: one definition of Ganglion's own files, and the data directory's
usage without them."""

from __future__ import annotations

import os
from pathlib import Path

from ganglion.owned import OwnedFiles, data_dir_usage


def test_what_ganglion_owns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    owned = OwnedFiles.of(
        data,
        config_file=tmp_path / "config.yaml",
        log_dir=tmp_path / "logs",
        matrix_store_dir=tmp_path / "element",
    )
    for path in (
        "data/conversation.db",
        "data/scheduler.db-wal",
        "data/reminders.json",
        "data/.reminders.json.0123456789ab.tmp",
        "data/web_token",
        "data/matrix_pickle_key",
        "data/matrix",
        "data/matrix/olm.db",
        "element/sync_token",
        "logs",
        "logs/mcp-x.log",
        "config.yaml",
    ):
        assert owned.owns(tmp_path / path), path
    for path in ("data", "data/MEMORIES.txt", "data/scripts/reminders.json", "logs2", "x.db"):
        assert not owned.owns(tmp_path / path), path


def test_only_existing_owned_paths_are_listed_for_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "scheduler.db").write_text("")
    (tmp_path / "reminders.json").write_text("[]")
    (tmp_path / "MEMORIES.txt").write_text("")
    (tmp_path / "matrix").mkdir()
    owned = OwnedFiles.of(tmp_path, log_dir=tmp_path / "no-logs-yet")
    assert sorted(owned.existing()) == sorted(
        tmp_path / name for name in ("scheduler.db", "reminders.json", "matrix")
    )


def test_the_usage_leaves_out_ganglions_files_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "huge").write_bytes(b"x" * 10_000)
    data = tmp_path / "data"
    (data / "scripts" / "deep").mkdir(parents=True)
    (data / "MEMORIES.txt").write_bytes(b"m" * 100)
    (data / "scripts" / "deep" / "a").write_bytes(b"a" * 20)
    (data / "conversation.db").write_bytes(b"d" * 5_000)
    (data / "matrix").mkdir()
    (data / "matrix" / "olm.db").write_bytes(b"o" * 5_000)
    os.symlink(outside, data / "scripts" / "link")
    os.symlink(outside / "huge", data / "huge-link")
    assert data_dir_usage(OwnedFiles.of(data)) == 120
