"""The system prompt: instructions, memory, goals, skills, and where and when we are.

`build_system_prompt` is a pure function of the files' contents and the context.
`PromptFileCache` reads the files, and re-reads one only when its `stat` changed, so
every turn of every thread sees the assistant's latest edits at the cost of a few `stat`
calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "PromptCacheStatistics",
    "PromptContext",
    "PromptFileCache",
    "PromptFiles",
    "SkillEntry",
    "build_system_prompt",
]

SKILL_SUMMARY_CHARS = 200


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


def _content_lines(text: str) -> str:
    """The file without its `#` comment lines and surrounding blank lines."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines).strip()


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
    memories = _content_lines(files.memories) or "(none yet)"
    goals = _content_lines(files.heartbeats) or "(no active goals)"
    if files.skills:
        skills = "\n".join(f"- {s.name}: {s.summary}" for s in files.skills)
        skills += "\n(Read a skill's full text with your file tools before using it.)"
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


_Stamp = tuple[int, int, int]  # mtime_ns, size, inode


class PromptFileCache:
    """Reads the prompt files of `data_dir`, re-reading only what changed.

    A file is re-read only when its `(mtime_ns, size, inode)` changed; `skills/` is listed
    again only when the directory's own stamp changed (a skill added, removed or renamed),
    and each listed `*.md` is then checked like any other file.

    Resource handling: blocking; the daemon calls `load` in a worker thread. Not
    thread-safe: one caller at a time. Error handling: content problems never raise: a
    missing or unreadable file reads as empty, invalid UTF-8 is replaced with U+FFFD.
    """

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._files: dict[Path, tuple[_Stamp, str]] = {}
        self._skills_stamp: _Stamp | None = None
        self._skill_paths: list[Path] = []
        self._reads = 0
        self._stats = 0
        self._scans = 0

    def load(self) -> PromptFiles:
        skills = []
        for path in self._list_skills():
            text = self._read(path)
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            summary = first.lstrip("#").strip()[:SKILL_SUMMARY_CHARS]
            skills.append(SkillEntry(path.stem, summary or "(empty)"))
        return PromptFiles(
            base=self._read(self._dir / "BASE_PROMPT.txt"),
            memories=self._read(self._dir / "MEMORIES.txt"),
            heartbeats=self._read(self._dir / "HEARTBEATS.txt"),
            skills=tuple(skills),
        )

    def statistics(self) -> PromptCacheStatistics:
        return PromptCacheStatistics(self._reads, self._stats, self._scans)

    def _list_skills(self) -> list[Path]:
        directory = self._dir / "skills"
        self._stats += 1
        try:
            st = directory.stat()
        except OSError:
            stamp = None
        else:
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._skills_stamp:
            return self._skill_paths
        listed: list[Path] = []
        if stamp is not None:
            self._scans += 1
            try:
                with os.scandir(directory) as entries:
                    listed = sorted(
                        Path(e.path)
                        for e in entries
                        if e.name.endswith(".md") and not e.name.startswith(".") and e.is_file()
                    )
            except OSError:
                stamp = None  # listed again next time
        for gone in set(self._skill_paths) - set(listed):
            self._files.pop(gone, None)
        self._skills_stamp, self._skill_paths = stamp, listed
        return listed

    def _read(self, path: Path) -> str:
        self._stats += 1
        try:
            st = path.stat()
        except OSError:
            self._files.pop(path, None)
            return ""
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._files.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""
        self._reads += 1
        self._files[path] = (stamp, text)
        return text
