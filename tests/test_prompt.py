from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

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
EMPTY = PromptFiles("base", "", "", ())


def touch_later(path: Path) -> None:
    """Move the mtime forward, so a rewrite is seen even on coarse-mtime filesystems."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


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
        "## Memories",
        "- the owner is Ada",
        "## Active goals",
        "- ship the release",
        "## Skills",
        "- backups: How to run the nightly backup",
        "## Now",
        "Tuesday 24 November 2026, 09:30 (Europe/Paris, UTC+0100)",
        "## This conversation",
        "Thread !room:example.org, on a Matrix room.",
    ]
    positions = [prompt.index(part) for part in order]
    assert positions == sorted(positions)
    assert prompt.startswith("BASE INSTRUCTIONS")
    assert "# comment" not in prompt


def test_the_same_inputs_give_the_same_prompt() -> None:
    assert build_system_prompt(EMPTY, CONTEXT) == build_system_prompt(EMPTY, CONTEXT)


def test_empty_files_say_so_briefly() -> None:
    prompt = build_system_prompt(PromptFiles("base", "", "# only comments", ()), CONTEXT)
    assert "## Memories (MEMORIES.txt)\n(none yet)\n" in prompt
    assert "## Active goals (HEARTBEATS.txt)\n(no active goals)\n" in prompt
    assert "## Skills (skills/)\n(no skills written yet)\n" in prompt


def test_the_time_is_shown_in_the_configured_timezone_with_weekday() -> None:
    context = PromptContext(
        now=datetime(2026, 7, 4, 23, 5, 9, tzinfo=UTC),
        timezone="America/New_York",
        thread_id="web_ab12",
        interface="web",
    )
    prompt = build_system_prompt(EMPTY, context)
    assert "Saturday 04 July 2026, 19:05 (America/New_York, UTC-0400)" in prompt
    assert "ISO 2026-07-04T19:05:09-04:00" in prompt


def test_an_unknown_timezone_name_keeps_the_given_offset() -> None:
    context = PromptContext(datetime(2026, 1, 1, 8, 0, tzinfo=UTC), "Mars/Olympus", "web_1", "web")
    assert "Thursday 01 January 2026, 08:00 (Mars/Olympus, UTC+0000)" in build_system_prompt(
        EMPTY, context
    )


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        PromptContext(datetime(2026, 1, 1), "UTC", "web_1", "web")


@pytest.mark.parametrize(
    ("thread_id", "interface", "expected"),
    [
        ("web_ab12", "web", "Thread web_ab12, on the built-in web chat"),
        ("system", "system", "Thread system, on an autonomous system thread"),
        ("!r:hs", "matrix", "Thread !r:hs, on a Matrix room."),
    ],
)
def test_the_thread_and_interface_are_named(thread_id: str, interface: str, expected: str) -> None:
    context = PromptContext(CONTEXT.now, CONTEXT.timezone, thread_id, interface)
    assert expected in build_system_prompt(EMPTY, context)


def test_the_skills_index_lists_name_and_first_line_only(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "deploy.md").write_text("\n\n# Deploying the site\nstep one\nstep two\n")
    (skills / "backup.md").write_text("Run restic nightly.\nsecret details\n")
    (skills / "empty.md").write_text("\n")
    (skills / "notes.txt").write_text("not a skill")
    (skills / ".draft.md").write_text("editor temp file")
    files = PromptFileCache(tmp_path).load()
    assert files.skills == (
        SkillEntry("backup", "Run restic nightly."),
        SkillEntry("deploy", "Deploying the site"),
        SkillEntry("empty", "(empty)"),
    )
    prompt = build_system_prompt(files, CONTEXT)
    assert "- deploy: Deploying the site" in prompt
    assert "step one" not in prompt and "secret details" not in prompt


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
    touch_later(memories)
    assert cache.load().memories == "- one\n- two"
    assert cache.statistics().reads == reads + 1


def test_a_file_that_appears_later_is_read(tmp_path: Path) -> None:
    cache = PromptFileCache(tmp_path)
    assert cache.load().heartbeats == ""
    (tmp_path / "HEARTBEATS.txt").write_text("- water the plants")
    assert cache.load().heartbeats == "- water the plants"
    (tmp_path / "HEARTBEATS.txt").unlink()
    assert cache.load().heartbeats == ""


def test_skills_are_listed_again_only_when_the_directory_changes(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "a.md").write_text("Alpha")
    cache = PromptFileCache(tmp_path)
    cache.load()
    cache.load()
    assert cache.statistics().scans == 1
    (skills / "b.md").write_text("Beta")
    touch_later(skills)
    assert [s.name for s in cache.load().skills] == ["a", "b"]
    assert cache.statistics().scans == 2
    (skills / "a.md").unlink()
    touch_later(skills)
    assert [s.name for s in cache.load().skills] == ["b"]
    assert cache.statistics().scans == 3


def test_an_edited_skill_is_re_read_without_listing_again(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "a.md").write_text("Alpha")
    (skills / "b.md").write_text("Beta")
    cache = PromptFileCache(tmp_path)
    cache.load()
    reads = cache.statistics().reads
    (skills / "a.md").write_text("Alpha, revised")
    touch_later(skills / "a.md")
    assert cache.load().skills[0] == SkillEntry("a", "Alpha, revised")
    assert cache.statistics().reads == reads + 1
    assert cache.statistics().scans == 1


def test_bad_bytes_and_missing_files_never_raise(tmp_path: Path) -> None:
    (tmp_path / "MEMORIES.txt").write_bytes(b"- caf\xe9")
    files = PromptFileCache(tmp_path).load()
    assert files.memories == "- caf\ufffd"
    assert files.base == "" and files.skills == ()
