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
    now: datetime
    timezone: str
    thread_id: str
    interface: str


INTERFACES = {
    "web": "the built-in web chat (a browser tab)",
    "matrix": "a Matrix room",
    "system": "an autonomous system thread (no person is reading live; results go to the log)",
}


def _content_lines(text: str) -> str:
    """The file without its `#` comment lines and surrounding blank lines."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines).strip()


def build_system_prompt(files: PromptFiles, context: PromptContext) -> str:
    memories = _content_lines(files.memories) or "(none yet)"
    goals = _content_lines(files.heartbeats) or "(no active goals)"
    if files.skills:
        skills = "\n".join(f"- {s.name}: {s.summary}" for s in files.skills)
        skills += "\n(Read a skill's full text with your file tools before using it.)"
    else:
        skills = "(no skills written yet)"
    now = context.now
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
    reads: int
    stats: int


_Stamp = tuple[int, int, int]  # mtime_ns, size, inode


class PromptFileCache:
    """Reads the prompt files of `data_dir`, re-reading only what changed.

    Not thread-safe: call `load` from one thread at a time (the daemon serialises it).
    Content problems never raise: a missing file reads as empty, invalid UTF-8 is
    replaced.
    """

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._files: dict[Path, tuple[_Stamp, str]] = {}
        self._reads = 0
        self._stats = 0

    def load(self) -> PromptFiles:
        skills = []
        for path in self._skill_paths():
            text = self._read(path)
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            summary = first.lstrip("# ").strip()[:SKILL_SUMMARY_CHARS]
            skills.append(SkillEntry(path.stem, summary or "(empty)"))
        return PromptFiles(
            base=self._read(self._dir / "BASE_PROMPT.txt"),
            memories=self._read(self._dir / "MEMORIES.txt"),
            heartbeats=self._read(self._dir / "HEARTBEATS.txt"),
            skills=tuple(skills),
        )

    def statistics(self) -> PromptCacheStatistics:
        return PromptCacheStatistics(self._reads, self._stats)

    def _skill_paths(self) -> list[Path]:
        try:
            entries = sorted(os.scandir(self._dir / "skills"), key=lambda e: e.name)
        except OSError:
            return []
        return [Path(e.path) for e in entries if e.name.endswith(".md") and e.is_file()]

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
