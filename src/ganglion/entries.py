"""Entry lists: the pure logic behind MEMORIES.txt and HEARTBEATS.txt.

Both files are plain text the owner may edit by hand: `#` comment lines and blank lines,
and one entry per line, written `- text`. Any other line counts as an entry too, so a
hand-written line can be matched, replaced and removed like the others. Operations work on
the list of lines and keep comments where they are; entries are matched by their text,
exactly or as a unique case-insensitive excerpt.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganglion.errors import GanglionError

__all__ = [
    "EntryError",
    "EntryFile",
    "active_lines",
    "is_comment",
    "normalize_entry",
    "without_comments",
]

MATCH_PREVIEW = 5


class EntryError(GanglionError):
    """An edit that cannot be applied; the message says why, for the model."""


def normalize_entry(text: str, max_chars: int) -> str:
    """One line of text: whitespace (newlines included) collapsed, a leading `- ` dropped."""
    entry = " ".join(text.split())
    entry = entry.removeprefix("- ").strip()
    if not entry:
        raise EntryError("the entry is empty")
    if len(entry) > max_chars:
        raise EntryError(f"the entry is {len(entry)} characters long; the limit is {max_chars}")
    return entry


def is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def without_comments(text: str) -> str:
    """The file without its `#` comment lines and surrounding blank lines."""
    return "\n".join(line for line in text.splitlines() if not is_comment(line)).strip()


def active_lines(text: str) -> str:
    """The entry lines of the file: everything but blank lines and `#` comments."""
    return "\n".join(line for line in text.splitlines() if line.strip() and not is_comment(line))


def _entry_text(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or is_comment(stripped):
        return None
    return stripped.removeprefix("-").strip() or None


@dataclass(slots=True)
class EntryFile:
    """The lines of an entry file, edited in memory; `render` gives the new text."""

    lines: list[str]

    @classmethod
    def parse(cls, text: str) -> EntryFile:
        return cls(text.splitlines())

    def render(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""

    def entries(self) -> list[str]:
        return [text for line in self.lines if (text := _entry_text(line)) is not None]

    def add(self, entry: str) -> None:
        if any(existing.casefold() == entry.casefold() for existing in self.entries()):
            raise EntryError("that entry is already there")
        self.lines.append(f"- {entry}")

    def replace(self, excerpt: str, entry: str) -> str:
        """Replace the entry matching `excerpt` with `entry`; return the old entry."""
        index = self._find(excerpt)
        old = _entry_text(self.lines[index]) or ""
        self.lines[index] = f"- {entry}"
        return old

    def remove(self, excerpt: str) -> str:
        """Remove the entry matching `excerpt`; return it."""
        index = self._find(excerpt)
        old = _entry_text(self.lines[index]) or ""
        del self.lines[index]
        return old

    def pop_oldest(self, keep: str) -> str | None:
        """Remove and return the first entry that is not `keep`, or None if none is left."""
        for index, line in enumerate(self.lines):
            text = _entry_text(line)
            if text is not None and text != keep:
                del self.lines[index]
                return text
        return None

    def _find(self, excerpt: str) -> int:
        wanted = " ".join(excerpt.split()).removeprefix("- ").strip().casefold()
        if not wanted:
            raise EntryError("say which entry: give its text or a unique part of it")
        candidates = [
            (index, text)
            for index, line in enumerate(self.lines)
            if (text := _entry_text(line)) is not None
        ]
        exact = [index for index, text in candidates if text.casefold() == wanted]
        if len(exact) == 1:
            return exact[0]
        found = [(index, text) for index, text in candidates if wanted in text.casefold()]
        if not found:
            raise EntryError(f"no entry contains {excerpt.strip()!r}")
        if len(found) > 1:
            shown = "; ".join(repr(text) for _, text in found[:MATCH_PREVIEW])
            raise EntryError(
                f"{len(found)} entries contain {excerpt.strip()!r} ({shown}); "
                "give a longer excerpt that matches only one"
            )
        return found[0][0]
