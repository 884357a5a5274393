"""The approval questions asked in Matrix rooms: which event asks which question, what
the question says, and how an owner's answer to it reads.

A question (`ApprovalAsked`) goes out as an `m.text` (it should reach the owner's phone
as a message does) with the exact call in a code block. It is answered by a reply *to
that event* saying yes, no or always, or a ✅ or ❌ reaction *on that event* (with the
trust rule, a ✅ only when it was encrypted: `matrix.sync` rule 7); any other message is
an ordinary message. Which event asks which question is kept for this run only: after a restart an open question is asked again (a new event), and the old
event is then not an answer's target (the answer is refused with a short notice).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ganglion.messages import ApprovalAnswer, ApprovalAsked

__all__ = [
    "ALLOW_KEYS",
    "DENY_KEYS",
    "OUTCOMES",
    "Question",
    "Questions",
    "question_text",
    "reply_answer",
    "settled_text",
]

# With and without the emoji presentation selector: clients send either.
ALLOW_KEYS: Final = frozenset({"\u2705", "\u2705\ufe0f"})
DENY_KEYS: Final = frozenset({"\u274c", "\u274c\ufe0f"})
REMEMBERED: Final = 200  # questions of this run kept (asked, answered or not)

OUTCOMES: Final = {
    "once": "Allowed once",
    "always": "Always allowed (a rule was added to approvals.yaml)",
    "owner": "Denied",
    "timeout": "Denied: no answer in time",
    "stop": "Denied: the turn was stopped",
    "ended": "Denied: the turn ended",
    "nobody": "Denied: no one to ask",
}
_ANSWERS: Final[dict[str, ApprovalAnswer]] = {
    "yes": "allow",
    "y": "allow",
    "allow": "allow",
    "ok": "allow",
    "no": "deny",
    "n": "deny",
    "deny": "deny",
    "always": "always",
}


@dataclass(frozen=True, slots=True)
class Question:
    """The question `approval_id`, asked in `room_id` by the event `event_id`."""

    approval_id: str
    room_id: str
    event_id: str
    call: str


class Questions:
    """The questions this run asked, by the event that asked them (the latest
    `REMEMBERED`)."""

    def __init__(self) -> None:
        self._by_event: OrderedDict[str, Question] = OrderedDict()
        self._by_approval: dict[str, Question] = {}

    def asked(self, question: Question) -> None:
        self._by_event[question.event_id] = question
        self._by_approval[question.approval_id] = question
        while len(self._by_event) > REMEMBERED:
            _, old = self._by_event.popitem(last=False)
            if self._by_approval.get(old.approval_id) is old:
                del self._by_approval[old.approval_id]

    def is_asked(self, approval_id: str) -> bool:
        return approval_id in self._by_approval

    def of_event(self, event_id: str) -> Question | None:
        return self._by_event.get(event_id)

    def of_approval(self, approval_id: str) -> Question | None:
        return self._by_approval.get(approval_id)


def question_text(asked: ApprovalAsked, expires: datetime) -> str:
    """The question as Markdown: the exact call in a code block, what asks, how to
    answer and until when."""
    fence = "```"
    while fence in asked.call:
        fence += "`"
    who = "Ganglion wants"
    if asked.from_thread != asked.thread_id:
        who = f"Background work ({asked.from_thread}) wants"
    words = "**yes**, **no** or **always**" if asked.always else "**yes** or **no**"
    return (
        f"**{who} to run this. Allow it?**\n\n{fence}\n{asked.call}\n{fence}\n\n"
        f"Reply {words} to this message, or react ✅ to allow it once or ❌ to deny it "
        "(a ✅ counts only from a client that encrypts reactions; Element does not). "
        f"Asked by {asked.why}; denied if not answered by {expires:%H:%M}."
    )


def settled_text(outcome: str, call: str, by: str | None) -> str:
    who = f" by {by}" if by and by not in ("owner", "ganglion") else ""
    return f"{OUTCOMES.get(outcome, outcome)}{who}: `{call}`"


def reply_answer(text: str) -> ApprovalAnswer | None:
    """What a reply's text answers (`yes`, `no`, `always`, in any case, with trailing
    punctuation), or None when it is not an answer."""
    word = re.sub(r"[\s.!]+$", "", text.strip().lower())
    return _ANSWERS.get(word)
