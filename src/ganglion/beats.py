"""What a heartbeat review asks and how its answer is read (pure).

Rules:

1. A review speaks only when it has something worth saying. The agreed silent answer is
   `HEARTBEAT_OK`; `is_silent` also recognises it wrapped in quotes, Markdown or
   punctuation, with a short sentence around it, or at the start of a longer answer.
2. Beats keep to their schedule: the next one is due an interval after the previous
   one was due, not after it finished (`next_beat`).
3. `active_hours` ("08:00-22:00", in the owner's timezone; may wrap past midnight)
   keep beats out of the night (`ActiveHours`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

__all__ = [
    "HEARTBEAT_OK",
    "REVIEW_MARKER",
    "ActiveHours",
    "global_review_text",
    "is_silent",
    "next_beat",
    "thread_review_text",
]

HEARTBEAT_OK = "HEARTBEAT_OK"
# What a review that spoke leaves in the conversation in place of its instructions.
REVIEW_MARKER = "[Heartbeat review]"
# Words around the silent token that still make a silent answer ("All quiet: HEARTBEAT_OK").
MAX_WORDS_AROUND = 12

_MARKUP = re.compile("[`*~\"'\u201c\u201d\u2018\u2019\u00ab\u00bb>#\\[\\]()]+")


def is_silent(text: str) -> bool:
    """Whether a review's answer is the silent one (rule 1)."""
    plain = _MARKUP.sub(" ", text)
    words = [w.strip("_-") for w in re.findall(r"[\w-]+", plain) if w.strip("_-")]
    if HEARTBEAT_OK not in words:
        return not words  # an empty answer says nothing either
    if words[0] == HEARTBEAT_OK:
        return True  # it starts with it: whatever follows is the model thinking aloud
    return len(words) - 1 <= MAX_WORDS_AROUND


def next_beat(due: float, interval: float, now: float) -> float:
    """The beat after the one that was `due` (rule 2): one interval later, or the first
    on the same schedule after `now` when beats were missed (a suspended machine)."""
    following = due + interval
    if following > now:
        return following
    missed = int((now - due) // interval)
    return due + (missed + 1) * interval


@dataclass(frozen=True, slots=True)
class ActiveHours:
    """The hours of the day beats run in (rule 3); `start == end` means all day."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> ActiveHours:
        """From "HH:MM-HH:MM". Raises `ValueError` with a readable message."""
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if match is None:
            raise ValueError('write the hours as "HH:MM-HH:MM", e.g. "08:00-22:00"')
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if not (h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60) or (h2 == 24 and m2):
            raise ValueError(f"{text.strip()!r} is not a time of day range")
        end = time(0, 0) if h2 == 24 else time(h2, m2)
        return cls(time(h1, m1), end)

    def contains(self, moment: time) -> bool:
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # wraps past midnight


def thread_review_text() -> str:
    """The instruction of a review of one conversation (its recent turns come before it;
    the goals and memories are in the system prompt)."""
    return (
        "[Heartbeat review of this conversation. Look at the recent messages above and at "
        "the active goals in your instructions. If something is due, promised, or worth a "
        "short follow-up now, write that message to the owner. Otherwise, and in any doubt, "
        f"reply exactly {HEARTBEAT_OK} and nothing else: that reply is shown to no one.]"
    )


def global_review_text() -> str:
    """The instruction of the global review of the shared goals."""
    return (
        "[Heartbeat review. Review the active goals in your instructions (from "
        "HEARTBEATS.txt) and act where something is due, using your tools. If nothing needs "
        f"the owner's attention, reply exactly {HEARTBEAT_OK}; otherwise write the message "
        "to the owner.]"
    )
