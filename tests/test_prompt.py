from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ganglion.prompt import (
    PromptContext,
    PromptFileCache,
    PromptFiles,
    SkillEntry,
    build_system_prompt,
)

CONTEXT = PromptContext(
    now=datetime(2026, 11, 24, 9, 30, tzinfo=ZoneInfo("Europe/Paris")),
    timezone="Europe/Paris",
    thread_id="!room:example.org",
    interface="matrix",
)


def test_the_parts_come_in_a_stable_order() -> None:
    files = PromptFiles(
        base="BASE INSTRUCTIONS",
        memories="# comment\n- the owner is Ada",
        heartbeats="- ship the release",
        skills=(SkillEntry("backups", "How to run the nightly backup"),),
    )
    prompt = build_system_prompt(files, CONTEXT)
    order = [
        "BASE INSTRUCTIONS",
        "- the owner is Ada",
        "- ship the release",
        "- backups: How to run the nightly backup",
        "Tuesday 24 November 2026, 09:30 (Europe/Paris, UTC+0100)",
        "Thread !room:example.org, on a Matrix room.",
    ]
    positions = [prompt.index(part) for part in order]
    assert positions == sorted(positions)
    assert "# comment" not in prompt


def test_empty_files_say_so_briefly() -> None:
    prompt = build_system_prompt(PromptFiles("base", "", "# only comments", ()), CONTEXT)
    assert "(none yet)" in prompt
    assert "(no active goals)" in prompt
    assert "(no skills written yet)" in prompt


def test_the_cache_reads_files_only_when_they_change(tmp_path: Path) -> None:
    (tmp_path / "BASE_PROMPT.txt").write_text("base")
    (tmp_path / "MEMORIES.txt").write_text("- one")
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "deploy.md").write_text("\n# Deploying the site\nsteps...")
    cache = PromptFileCache(tmp_path)
    first = cache.load()
    assert first.skills == (SkillEntry("deploy", "Deploying the site"),)
    reads = cache.statistics().reads
    assert reads == 3  # base, memories, one skill; HEARTBEATS.txt is missing
    assert cache.load() == first
    assert cache.statistics().reads == reads
    memories = tmp_path / "MEMORIES.txt"
    memories.write_text("- one\n- two")
    stat = memories.stat()
    os.utime(memories, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache.load().memories == "- one\n- two"
    assert cache.statistics().reads == reads + 1


def test_bad_bytes_and_missing_files_never_raise(tmp_path: Path) -> None:
    (tmp_path / "MEMORIES.txt").write_bytes(b"- caf\xe9")
    files = PromptFileCache(tmp_path).load()
    assert files.memories == "- caf\ufffd"
    assert files.base == "" and files.skills == ()
