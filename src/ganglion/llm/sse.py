"""A small Server-Sent Events parser: bytes in, event data out (pure, no I/O).

Only what chat-completion streams use, following the WHATWG rules for it: the stream is
UTF-8; lines end with "\\n", "\\r\\n" or "\\r"; `data:` fields (several in one event are
joined with "\\n", one leading space is dropped); comment lines starting with `:`
(keep-alives) ignored; other fields (`event:`, `id:`, `retry:`) ignored; an event ends at
a blank line. Network chunks may split an event, a line, a CRLF pair or a UTF-8 character
anywhere: the parser keeps the unfinished part until the next chunk. The OpenAI
end-of-stream marker is an ordinary event whose data is `[DONE]`; `is_done` tells.

    parser = SSEParser()
    async for chunk in response.aiter_bytes():
        for data in parser.feed(chunk):
            ...
    for data in parser.close():       # an event the stream ended without a blank line
        ...

`feed_line` takes one already-split line, for callers that split lines themselves.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["DONE", "SSEParser", "is_done"]

DONE = "[DONE]"
_LINE_END = re.compile(r"\r\n|\r|\n")


def is_done(data: str) -> bool:
    """True for the `data: [DONE]` event that ends an OpenAI stream."""
    return data.strip() == DONE


class SSEParser:
    """Turns a byte stream into the data of its events, in order."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # text after the last complete line
        self._data: list[str] = []
        self._first_line = True

    def feed(self, chunk: bytes) -> list[str]:
        """Take the next piece of the body; return the data of each event it completed."""
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[str]:
        """The stream has ended: return what its unfinished last event held, if anything."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        tail, self._pending = self._pending, ""
        for line in (tail, ""):
            if (data := self.feed_line(line)) is not None:
                events.append(data)
        return events

    def feed_line(self, line: str) -> str | None:
        """Take one line (its line ending removed or not); return an event's data when the
        line ends one."""
        line = line.rstrip("\r\n")
        if self._first_line:
            line = line.removeprefix("\ufeff")
            self._first_line = False
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

    def _feed_text(self, text: str) -> list[str]:
        # The unfinished line was searched already: look for line ends only in what is
        # new (and a "\r" the pending text ended with), so a long event that arrives in
        # many chunks costs linear time, not quadratic.
        searched = max(0, len(self._pending) - 1)
        text = self._pending + text
        events = []
        start = 0
        while (end := _LINE_END.search(text, max(start, searched))) is not None:
            if end.group() == "\r" and end.end() == len(text):
                break  # maybe the first half of a "\r\n" still on its way
            line, start = text[start : end.start()], end.end()
            if (data := self.feed_line(line)) is not None:
                events.append(data)
        self._pending = text[start:]
        return events
