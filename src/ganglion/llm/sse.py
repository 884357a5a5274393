"""A small Server-Sent Events parser: lines in, event data out (pure).

Only what chat-completion streams use: `data:` fields (several lines joined with "\n"),
comments (`:`), and other fields ignored. An event ends at a blank line.
"""

from __future__ import annotations

__all__ = ["SSEParser"]


class SSEParser:
    def __init__(self) -> None:
        self._data: list[str] = []

    def feed_line(self, line: str) -> str | None:
        """Take one line (without its line ending); return an event's data when it ends."""
        line = line.rstrip("\r")
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """The last event if the stream ended without its blank line."""
        return self.feed_line("")
