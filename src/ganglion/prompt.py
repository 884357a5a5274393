"""The system prompt: instructions, memory, goals, skills, and where and when we are.

`build_system_prompt` is a pure function of the files' contents and the context.
`PromptFileCache` reads the files, and re-reads one only when its `stat` changed, so
every turn of every thread sees the assistant's latest edits at the cost of a few `stat`
calls.

What the model writes must not grow the prompt without bound (200 skills once made it
larger than the context window), so the cache fits the files to a budget: MEMORIES.txt
is cut at `max_memories_bytes` (the memory tools keep it under that anyway; this covers
hand or shell edits), the goals at half of `prompt_goals_and_skills_bytes`, and the
skills index (a name and a first line per skill, never a whole skill) stops when the rest
of that budget is used, saying how many skills it left out. A cut is always marked.

The files are read through `ganglion.safefs`: a symbolic link or a hard-linked file in
their place (a sandboxed command can plant one) is skipped, logged once, never followed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ganglion import safefs
from ganglion.config import MemoryToolConfig
from ganglion.datadir import BASE_PROMPT_FILE, GOALS_FILE, MEMORIES_FILE, SKILLS_DIR
from ganglion.entries import without_comments

__all__ = [
    "PromptCacheStatistics",
    "PromptContext",
    "PromptFileCache",
    "PromptFiles",
    "SkillEntry",
    "build_system_prompt",
    "cut_text",
    "skill_index_line",
]

log = logging.getLogger(__name__)

SKILL_SUMMARY_CHARS = 200
# Only the start of a skill is read: its first non-empty line is the summary.
SKILL_HEAD_BYTES = 1024
CUT_MARKER_BYTES = 160


@dataclass(frozen=True, slots=True)
class SkillEntry:
    name: str
    summary: str


@dataclass(frozen=True, slots=True)
class PromptFiles:
    base: str
    memories: str
    heartbeats: str
    skills: tuple[SkillEntry, ...]
    more_skills: int = 0  # skills left out of the index by its budget


@dataclass(frozen=True, slots=True)
class PromptContext:
    """Where and when a turn happens. `now` must be timezone-aware; it is shown in
    `timezone` (an IANA name) when that name is known, else in its own offset."""

    now: datetime
    timezone: str
    thread_id: str
    interface: str

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("PromptContext.now must be timezone-aware")


INTERFACES = {
    "web": "the built-in web chat (a browser tab)",
    "matrix": "a Matrix room",
    "system": "an autonomous system thread (no person is reading live; results go to the log)",
}


def skill_index_line(skill: SkillEntry) -> str:
    """The skills index line of `skill`, as the prompt shows it."""
    return f"- {skill.name}: {skill.summary}"


def cut_text(text: str, max_bytes: int, name: str) -> str:
    """`text` if it fits in `max_bytes` of UTF-8, else its first whole lines and a marker
    saying how much of `name` is left out; the result never exceeds `max_bytes`."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    kept = data[: max(max_bytes - CUT_MARKER_BYTES, 0)].decode("utf-8", errors="ignore")
    if "\n" in kept:
        kept = kept[: kept.rindex("\n")]
    left = len(data) - len(kept.encode("utf-8"))
    return f"{kept}\n[… {left} more bytes of {name} not shown; read the file for the rest]"


def _local_time(context: PromptContext) -> datetime:
    try:
        return context.now.astimezone(ZoneInfo(context.timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return context.now


def build_system_prompt(files: PromptFiles, context: PromptContext) -> str:
    """The system prompt, in a fixed order of headed sections: the base instructions,
    memories, active goals, the skills index, the current date and time, then this
    conversation's thread id and interface. `#` comment lines of MEMORIES.txt and
    HEARTBEATS.txt are left out; an empty file or skills directory says so in one line.
    """
    memories = without_comments(files.memories) or "(none yet)"
    goals = without_comments(files.heartbeats) or "(no active goals)"
    if files.skills or files.more_skills:
        skills = "\n".join(skill_index_line(s) for s in files.skills)
        if files.more_skills:
            skills += (
                f"\n(… and {files.more_skills} more skills, left out for space: "
                f"list_dir {SKILLS_DIR} shows them all.)"
            )
        skills += "\n(Read a skill's full text with read_skill before using it.)"
    else:
        skills = "(no skills written yet)"
    now = _local_time(context)
    when = (
        f"{now:%A %d %B %Y}, {now:%H:%M} ({context.timezone}, UTC{now:%z}); "
        f"ISO {now.isoformat(timespec='seconds')}"
    )
    where = INTERFACES.get(context.interface, context.interface)
    sections = [
        files.base.strip(),
        f"## Memories (MEMORIES.txt)\n{memories}",
        f"## Active goals (HEARTBEATS.txt)\n{goals}",
        f"## Skills (skills/)\n{skills}",
        f"## Now\n{when}",
        f"## This conversation\nThread {context.thread_id}, on {where}.",
    ]
    return "\n\n".join(section for section in sections if section)


@dataclass(frozen=True, slots=True)
class PromptCacheStatistics:
    """`reads`: files actually read; `stats`: `stat` calls; `scans`: listings of skills/."""

    reads: int
    stats: int
    scans: int


_Stamp = tuple[int, int, int, int]  # mtime_ns, size, inode, links


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_nlink)


class PromptFileCache:
    """Reads the prompt files of `data_dir`, re-reading only what changed, and fits them
    to the budgets of `config` (see the module docstring).

    A file is re-read only when its `(mtime_ns, size, inode, links)` changed; `skills/` is
    listed again only when the directory's own stamp changed (a skill added, removed or
    renamed), and each listed `*.md` is then checked like any other file. Skills past the
    index budget are counted, not read.

    Resource handling: blocking; the daemon calls `load` in a worker thread. Not
    thread-safe: one caller at a time. Error handling: content problems never raise: a
    missing or unreadable file reads as empty, invalid UTF-8 is replaced with U+FFFD, and
    a link or hard-linked file is skipped with one warning in the log (again only if the
    problem changes).
    """

    def __init__(self, data_dir: Path, config: MemoryToolConfig | None = None) -> None:
        self._dir = data_dir
        self._config = config or MemoryToolConfig()
        self._files: dict[str, tuple[_Stamp, str]] = {}
        self._skills_stamp: _Stamp | None = None
        self._skill_names: list[str] = []
        self._problems: dict[str, str] = {}
        self._reads = 0
        self._stats = 0
        self._scans = 0

    def load(self) -> PromptFiles:
        try:
            directory = safefs.open_dir(self._dir)
        except safefs.SafePathError:
            return PromptFiles("", "", "", ())
        with directory:
            base = self._read(directory, BASE_PROMPT_FILE) or ""
            memories = self._read(directory, MEMORIES_FILE) or ""
            goals = self._read(directory, GOALS_FILE) or ""
            budget = self._config.prompt_goals_and_skills_bytes
            goals = cut_text(without_comments(goals), budget // 2, GOALS_FILE)
            room = budget - len(goals.encode("utf-8"))
            skills, more = self._index_skills(directory, room)
        memories = cut_text(
            without_comments(memories), self._config.max_memories_bytes, MEMORIES_FILE
        )
        return PromptFiles(base, memories, goals, skills, more)

    def statistics(self) -> PromptCacheStatistics:
        return PromptCacheStatistics(self._reads, self._stats, self._scans)

    def _index_skills(
        self, directory: safefs.SafeDir, room: int
    ) -> tuple[tuple[SkillEntry, ...], int]:
        """The index entries that fit in `room` bytes, and how many skills did not."""
        self._stats += 1
        try:
            skills = directory.subdir(SKILLS_DIR)
        except safefs.SafePathError as exc:
            if not isinstance(exc, safefs.NotFound):
                self._problem(f"{SKILLS_DIR}/", exc)
            self._forget_skills([])
            return (), 0
        with skills:
            self._problems.pop(f"{SKILLS_DIR}/", None)
            names = self._list_skills(skills)
            shown: list[SkillEntry] = []
            skipped = 0
            for name in names:
                text = self._read(skills, name, key=f"{SKILLS_DIR}/{name}", limit=SKILL_HEAD_BYTES)
                if text is None:
                    skipped += 1  # gone since the listing, or refused (and logged)
                    continue
                first = next((line.strip() for line in text.splitlines() if line.strip()), "")
                summary = first.lstrip("#").strip()[:SKILL_SUMMARY_CHARS]
                entry = SkillEntry(name.removesuffix(".md"), summary or "(empty)")
                cost = len(skill_index_line(entry).encode("utf-8")) + 1
                if cost > room:
                    break
                room -= cost
                shown.append(entry)
        return tuple(shown), len(names) - skipped - len(shown)

    def _list_skills(self, skills: safefs.SafeDir) -> list[str]:
        stamp: _Stamp | None = _stamp(os.fstat(skills.fd))
        if stamp == self._skills_stamp:
            return self._skill_names
        self._scans += 1
        try:
            entries = skills.list()
        except safefs.SafePathError:
            entries, stamp = [], None  # listed again next time
        names = []
        for entry in entries:
            if not entry.name.endswith(".md") or entry.name.startswith("."):
                continue
            if entry.kind == "link":
                self._problem(
                    f"{SKILLS_DIR}/{entry.name}",
                    safefs.LinkRefused("it is a symbolic link; links are never followed"),
                )
            elif entry.kind == "file":
                names.append(entry.name)
        self._forget_skills(names)
        self._skills_stamp, self._skill_names = stamp, names
        return names

    def _forget_skills(self, kept: list[str]) -> None:
        keep = {f"{SKILLS_DIR}/{name}" for name in kept}
        for key in [k for k in self._files if k.startswith(f"{SKILLS_DIR}/") and k not in keep]:
            del self._files[key]
        if not kept:
            self._skills_stamp, self._skill_names = None, []

    def _read(
        self, directory: safefs.SafeDir, name: str, *, key: str | None = None, limit: int = -1
    ) -> str | None:
        """The text of `name`, or None when it is missing or refused."""
        key = key or name
        self._stats += 1
        try:
            stamp = _stamp(directory.stat(name))
            cached = self._files.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            data, st = directory.read_bytes(name, limit=limit)
        except safefs.SafePathError as exc:
            self._files.pop(key, None)
            if not isinstance(exc, safefs.NotFound):
                self._problem(key, exc)
            return None
        self._problems.pop(key, None)
        self._reads += 1
        text = data.decode("utf-8", errors="replace")
        self._files[key] = (_stamp(st), text)
        return text

    def _problem(self, key: str, exc: safefs.SafePathError) -> None:
        """Log `key` as skipped, once for each new reason."""
        reason = str(exc)
        if self._problems.get(key) != reason:
            self._problems[key] = reason
            log.warning("the prompt leaves out %s: %s", key, reason)
