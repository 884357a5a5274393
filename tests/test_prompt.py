from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ganglion.config import MemoryToolConfig
from ganglion.prompt import (
    PromptContext,
    PromptFileCache,
    PromptFiles,
    SkillEntry,
    build_system_prompt,
    cut_text,
    skill_index_line,
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


def test_text_that_fits_is_kept_whole() -> None:
    assert cut_text("- one\n- two", 100, "HEARTBEATS.txt") == "- one\n- two"


@pytest.mark.parametrize("limit", [200, 500, 1000])
def test_a_cut_keeps_whole_lines_marks_the_rest_and_fits(limit: int) -> None:
    text = "\n".join(f"- goal {i}: {'é' * 30}" for i in range(100))
    cut = cut_text(text, limit, "HEARTBEATS.txt")
    assert len(cut.encode("utf-8")) <= limit
    kept, marker = cut.rsplit("\n", 1)
    assert text.startswith(kept)
    assert limit < 300 or text.startswith(kept + "\n")  # whole lines when one fits
    left = len(text.encode()) - len(kept.encode())
    assert (
        marker == f"[… {left} more bytes of HEARTBEATS.txt not shown; read the file for the rest]"
    )


def write_skills(data_dir: Path, count: int) -> None:
    skills = data_dir / "skills"
    skills.mkdir(exist_ok=True)
    for i in range(count):
        (skills / f"skill-{i:03d}.md").write_text(f"# How to do task {i} " + "x" * 150 + "\n...")


def test_200_skills_keep_the_index_under_its_budget(tmp_path: Path) -> None:
    """Issue 19, row 8: 200 skills once made every prompt ~11k tokens; the index now
    stops at its budget, says how many it left out, and does not read the rest."""
    write_skills(tmp_path, 200)
    budget = 4096
    cache = PromptFileCache(tmp_path, MemoryToolConfig(prompt_goals_and_skills_bytes=budget))
    files = cache.load()
    index = "\n".join(skill_index_line(s) for s in files.skills)
    assert 0 < len(files.skills) < 200
    assert len(index.encode()) <= budget
    assert files.more_skills == 200 - len(files.skills)
    assert cache.statistics().reads == len(files.skills) + 1  # the index stopped reading
    prompt = build_system_prompt(files, CONTEXT)
    assert f"… and {files.more_skills} more skills" in prompt
    assert len(prompt.encode()) < budget + 1024  # base, headings, time: a few hundred bytes


def test_goals_take_at_most_half_and_the_skills_the_rest(tmp_path: Path) -> None:
    write_skills(tmp_path, 50)
    (tmp_path / "HEARTBEATS.txt").write_text(
        "# comments do not count\n" + "".join(f"- goal {i} " + "y" * 80 + "\n" for i in range(100))
    )
    budget = 4096
    files = PromptFileCache(tmp_path, MemoryToolConfig(prompt_goals_and_skills_bytes=budget)).load()
    assert len(files.heartbeats.encode()) <= budget // 2
    assert files.heartbeats.startswith("- goal 0 ")
    assert "more bytes of HEARTBEATS.txt not shown" in files.heartbeats
    index = "\n".join(skill_index_line(s) for s in files.skills)
    assert len(files.heartbeats.encode()) + len(index.encode()) <= budget
    assert files.skills and files.more_skills


def test_memories_past_their_cap_are_cut(tmp_path: Path) -> None:
    (tmp_path / "MEMORIES.txt").write_text(
        "".join(f"- fact {i} " + "z" * 90 + "\n" for i in range(50))
    )
    files = PromptFileCache(tmp_path, MemoryToolConfig(max_memories_bytes=1024)).load()
    assert len(files.memories.encode()) <= 1024
    assert "more bytes of MEMORIES.txt not shown" in files.memories


def test_linked_prompt_files_are_skipped_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19, rows 1 and 10: a skill linked to the daemon's environment, a skill
    hard-linked to the web token, memories linked to a file outside: none is followed
    into the prompt."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bashrc").write_text("export SECRET=from-bashrc")
    data = tmp_path / "data"
    data.mkdir()
    (data / "web_token").write_text("token-123456")
    (data / "BASE_PROMPT.txt").write_text("base")
    (data / "MEMORIES.txt").symlink_to(outside / "bashrc")
    write_skills(data, 1)
    (data / "skills" / "env.md").symlink_to("/proc/self/environ")
    os.link(data / "web_token", data / "skills" / "token.md")
    cache = PromptFileCache(data)
    with caplog.at_level(logging.WARNING, logger="ganglion.prompt"):
        files = cache.load()
        cache.load()
    prompt = build_system_prompt(files, CONTEXT)
    assert "from-bashrc" not in prompt and "token-123456" not in prompt
    assert "PATH=" not in prompt
    assert [s.name for s in files.skills] == ["skill-000"]
    assert files.memories == "" and files.base == "base"
    skipped = sorted(r.getMessage().split(":")[0] for r in caplog.records)
    assert skipped == [
        "the prompt leaves out MEMORIES.txt",
        "the prompt leaves out skills/env.md",
        "the prompt leaves out skills/token.md",
    ]


def test_a_file_swapped_for_a_link_after_caching_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "HEARTBEATS.txt").write_text("- water the plants")
    cache = PromptFileCache(tmp_path)
    assert cache.load().heartbeats == "- water the plants"
    (tmp_path / "elsewhere.txt").write_text("- not a goal")
    (tmp_path / "HEARTBEATS.txt").unlink()
    (tmp_path / "HEARTBEATS.txt").symlink_to(tmp_path / "elsewhere.txt")
    assert cache.load().heartbeats == ""


def test_a_linked_skills_directory_is_not_listed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "leak.md").write_text("# leaked first line")
    data = tmp_path / "data"
    data.mkdir()
    (data / "skills").symlink_to(elsewhere)
    files = PromptFileCache(data).load()
    assert files.skills == () and files.more_skills == 0
