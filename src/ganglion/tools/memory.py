"""Memory, goal and skill tools: how the assistant keeps what it learns.

`MEMORIES.txt` (long-term facts), `HEARTBEATS.txt` (active goals) and `skills/*.md` are
shared by every thread and go into every system prompt; the prompt cache notices a
changed file by its stat, so an edit made in one thread is seen by every thread on its
next turn. These tools edit the files entry by entry (see `entries`), so the model never
has to rewrite a whole file to change one line.

`MEMORIES.txt` has a size cap, because it is sent with every turn: when an edit takes it
past the cap, the oldest entries move to `MEMORIES.archive.txt` (appended, with the date)
and the tool's answer says which ones moved. The archive is written and synced before the
memories file is replaced, so a crash in between can repeat an entry but never lose one.

Resource handling: edits are serialized by one lock shared by all threads; file work runs
in a worker thread; every file is reached through `ganglion.safefs` (no link followed, no
hard-linked file read or replaced, even when a sandboxed command planted it) and every
replacement is atomic (a temporary file, then a rename). The archive is appended to by
reading it and replacing it whole, never by opening it for append.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import trio

from ganglion import safefs
from ganglion.config import MemoryToolConfig
from ganglion.datadir import GOALS_FILE, MEMORIES_ARCHIVE_FILE, MEMORIES_FILE, SKILLS_DIR
from ganglion.entries import EntryError, EntryFile, normalize_entry
from ganglion.tools.files import run_safely
from ganglion.tools.registry import Tool, ToolContext, ToolError, tool

__all__ = ["ARCHIVE_NAME", "memory_tools", "skill_file_name"]

T = TypeVar("T")

ARCHIVE_NAME = MEMORIES_ARCHIVE_FILE
SKILL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def skill_file_name(name: str) -> str:
    """`name` as a skill file name (`Brew Tea` -> `brew-tea.md`), or `ToolError`."""
    slug = re.sub(r"[\s]+", "-", name.strip().lower()).removesuffix(".md")
    if not SKILL_NAME.fullmatch(slug):
        raise ToolError("a skill name is 1-64 letters, digits, '-' or '_' (for example 'brew-tea')")
    return f"{slug}.md"


def _read_text(directory: safefs.SafeDir, path: str) -> str:
    try:
        data, _ = directory.read_bytes(path)
    except safefs.NotFound:
        return ""
    return data.decode("utf-8", errors="replace")


def _append(data_dir: Path, path: str, text: str) -> None:
    """Append `text` to `path` by replacing the file whole (atomic, synced)."""
    with safefs.open_dir(data_dir) as directory:
        existing = _read_text(directory, path)
        directory.write_atomic(path, (existing + text).encode("utf-8"))


class _EntryStore:
    """One entry file under the shared lock; `edit` applies a change and saves it."""

    def __init__(self, data_dir: Path, name: str, lock: trio.Lock) -> None:
        self._data_dir = data_dir
        self._name = name
        self._lock = lock

    async def edit(self, change: Callable[[EntryFile], T]) -> T:
        def work() -> T:
            with safefs.open_dir(self._data_dir) as directory:
                entries = EntryFile.parse(_read_text(directory, self._name))
                try:
                    outcome = change(entries)
                except EntryError as exc:
                    raise ToolError(str(exc)) from None
                directory.write_atomic(self._name, entries.render().encode("utf-8"))
            return outcome

        async with self._lock:
            return await run_safely(work)


def memory_tools(config: MemoryToolConfig, data_dir: Path) -> list[Tool]:
    """The memory, goal and skill tools over the files of `data_dir`."""
    lock = trio.Lock()
    memories = _EntryStore(data_dir, MEMORIES_FILE, lock)
    goals = _EntryStore(data_dir, GOALS_FILE, lock)
    cap = config.max_memories_bytes

    def entry(text: str) -> str:
        try:
            return normalize_entry(text, config.max_entry_chars)
        except EntryError as exc:
            raise ToolError(str(exc)) from None

    def keep_under_cap(entries: EntryFile, kept: str) -> list[str]:
        """Move the oldest entries (never `kept`) to the archive until under the cap."""
        moved: list[str] = []
        while len(entries.render().encode("utf-8")) > cap:
            oldest = entries.pop_oldest(keep=kept)
            if oldest is None:
                break
            moved.append(oldest)
        if moved:
            stamp = date.today().isoformat()
            _append(data_dir, ARCHIVE_NAME, "".join(f"- [{stamp}] {text}\n" for text in moved))
        return moved

    def archived_note(moved: list[str]) -> str:
        if not moved:
            return ""
        shown = "; ".join(repr(text) for text in moved[:5])
        more = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
        return (
            f"\nMEMORIES.txt was over its {cap}-byte cap, so its {len(moved)} oldest "
            f"entr{'y' if len(moved) == 1 else 'ies'} moved to {ARCHIVE_NAME}: {shown}{more}. "
            "They are no longer in your prompt; read that file if you need them."
        )

    @tool(core=True, persists=True)
    async def remember(ctx: ToolContext, fact: str) -> str:
        """Add a long-term fact to MEMORIES.txt (one line; shared by every conversation).
        Use it for what will matter later: preferences, people, projects, machines."""
        text = entry(fact)

        def change(entries: EntryFile) -> list[str]:
            entries.add(text)
            return keep_under_cap(entries, text)

        moved = await memories.edit(change)
        return f"remembered: {text}" + archived_note(moved)

    @tool(persists=True)
    async def update_memory(ctx: ToolContext, old: str, new: str) -> str:
        """Replace the memory that contains `old` (a unique part of its text) with `new`."""
        text = entry(new)

        def change(entries: EntryFile) -> tuple[str, list[str]]:
            replaced = entries.replace(old, text)
            return replaced, keep_under_cap(entries, text)

        replaced, moved = await memories.edit(change)
        return f"replaced {replaced!r} with {text!r}" + archived_note(moved)

    @tool(persists=True)
    async def forget(ctx: ToolContext, memory: str) -> str:
        """Remove the memory that contains `memory` (a unique part of its text)."""
        removed = await memories.edit(lambda entries: entries.remove(memory))
        return f"forgot: {removed}"

    @tool(core=True, persists=True)
    async def add_goal(ctx: ToolContext, goal: str) -> str:
        """Add an active goal to HEARTBEATS.txt: something you promised to do, follow up on
        or watch. Goals are reviewed on every heartbeat until you finish them."""
        text = entry(goal)
        await goals.edit(lambda entries: entries.add(text))
        return f"goal added: {text}"

    @tool(persists=True)
    async def update_goal(ctx: ToolContext, old: str, new: str) -> str:
        """Replace the goal that contains `old` (a unique part of its text) with `new`
        (for example to record progress)."""
        text = entry(new)
        replaced = await goals.edit(lambda entries: entries.replace(old, text))
        return f"goal {replaced!r} is now {text!r}"

    @tool(persists=True)
    async def finish_goal(ctx: ToolContext, goal: str) -> str:
        """Remove the goal that contains `goal` (a unique part of its text): it is done
        or no longer wanted."""
        removed = await goals.edit(lambda entries: entries.remove(goal))
        return f"goal removed: {removed}"

    @tool(persists=True)
    async def write_skill(ctx: ToolContext, name: str, content: str) -> str:
        """Create or replace the skill `name` (skills/<name>.md): Markdown notes on how to
        do a recurring task. The first line is its one-sentence summary, shown in every
        conversation's skills index."""
        file_name = skill_file_name(name)
        body = content.strip()
        if not body:
            raise ToolError("the skill is empty")
        data = (body + "\n").encode("utf-8")
        if len(data) > config.max_skill_bytes:
            raise ToolError(
                f"the skill is {len(data)} bytes; the limit is {config.max_skill_bytes}"
            )

        def write() -> bool:
            with safefs.open_dir(data_dir) as directory:
                directory.mkdir(SKILLS_DIR)
                return directory.write_atomic(f"{SKILLS_DIR}/{file_name}", data)

        async with lock:
            existed = await run_safely(write)
        return f"{'replaced' if existed else 'wrote'} skill skills/{file_name}"

    @tool(brief="Read the skill `name`.")
    async def read_skill(ctx: ToolContext, name: str) -> str:
        """Read the full text of the skill `name` (as listed in the skills index)."""
        path = f"{SKILLS_DIR}/{skill_file_name(name)}"

        def read() -> str:
            with safefs.open_dir(data_dir) as directory:
                return _read_text(directory, path)

        text = await run_safely(read)
        if not text:
            raise ToolError(f"there is no skill named {name!r}")
        return text

    return [
        remember,
        update_memory,
        forget,
        add_goal,
        update_goal,
        finish_goal,
        write_skill,
        read_skill,
    ]
