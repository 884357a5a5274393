"""Tightening the data directory's permissions, never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ganglion.private import tighten


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_group_and_other_bits_are_removed_below_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "skills").mkdir(parents=True)
    (data / "skills" / "tea.md").write_text("tea")
    (data / "conversation.db").write_text("")
    for path, bits in [
        (data, 0o755),
        (data / "skills", 0o775),
        (data / "skills" / "tea.md", 0o664),
        (data / "conversation.db", 0o600),
    ]:
        os.chmod(path, bits)
    changed = tighten([data])
    assert sorted(str(p.relative_to(tmp_path)) for p, _ in changed) == [
        "data",
        "data/skills",
        "data/skills/tea.md",
    ]
    assert (mode(data), mode(data / "skills"), mode(data / "skills" / "tea.md")) == (
        0o700,
        0o700,
        0o600,
    )


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    outside = tmp_path / "shared.txt"
    outside.write_text("someone else's")
    os.chmod(outside, 0o644)
    (data / "link").symlink_to(outside)
    (data / "dirlink").symlink_to(tmp_path)
    assert tighten([data]) == []
    assert mode(outside) == 0o644


def test_only_the_named_log_files_are_changed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    ours, theirs = logs / "ganglion.log", logs / "syslog"
    for path in (ours, theirs):
        path.write_text("")
        os.chmod(path, 0o644)
    tighten([], [ours])
    assert (mode(logs), mode(ours), mode(theirs)) == (0o755, 0o600, 0o644)
