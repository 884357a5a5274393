"""Every message that crosses an actor's mailbox, in one place.

Messages are frozen, slotted dataclasses dispatched with `match`; no dicts on the bus.

Inbound (interfaces, reminders, heartbeat -> thread registry -> ThreadActor):

    UserMessage       a person wrote in a Matrix room or a web tab
    ReminderDue       a reminder slot fired for this thread
    HeartbeatReview   the heartbeat asks a thread for a review (answered with a ReviewOutcome)
    Announce          the heartbeat has the thread say what the global review found
    GetThreadInfo     request/reply: the thread's state (for status views and tests)
    Wake              activate a thread so it answers turns cut off before a restart
    StopTurn          the owner stops a running turn (its partial answer is kept)
    RewindTurn        the owner takes back the last turn: regenerate it, or edit their message
    ChooseVersion     the owner shows another version of the last turn's answer

Outbound (ThreadActor -> DeliveryRouter -> the interface that owns the thread):

    TurnStarted       the assistant began working on a turn
    TextDelta         streamed tokens of the reply
    ToolActivity      a tool call started or finished
    FinalReply        the complete reply text (also stored in the outbox)
    FileSent          a file the assistant sends into the conversation (in the outbox too)
    TurnFailed        the turn could not be completed; `message` is safe to show
    Notice            a short system message (command output, compaction done, …)
    ApprovalAsked     a tool call waits for the owner's yes (asked where the owner is)
    ApprovalSettled   a question was answered, timed out or was withdrawn
    ThreadRetitled    the titler named a conversation (every list that shows it changes)

Service requests:

    AddReminder       request/reply to the reminder actor: schedule one
    CancelReminder    request/reply to the reminder actor: cancel one
    ConfirmReminder   request/reply to the reminder actor: the owner allows a recurring one
    ListReminders     request/reply to the reminder actor: list them
    TriggerHeartbeat  ask the heartbeat actor for a review now
    TitleWanted       a conversation was answered: the titler names it if it is still unnamed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ganglion.transcript import Attachment
from ganglion_actors import Reply

__all__ = [
    "AddReminder",
    "Announce",
    "CancelReminder",
    "ConfirmReminder",
    "FileSent",
    "FinalReply",
    "GetThreadInfo",
    "HeartbeatReview",
    "Inbound",
    "ListReminders",
    "Notice",
    "Outbound",
    "ReminderDue",
    "ReminderInfo",
    "ReminderRequest",
    "ReviewOutcome",
    "RewindTurn",
    "StopTurn",
    "TextDelta",
    "ThreadInfo",
    "ThreadRetitled",
    "TitleWanted",
    "ToolActivity",
    "TriggerHeartbeat",
    "TurnFailed",
    "TurnStarted",
    "UserMessage",
    "Wake",
    "reminder_turn_id",
    "user_turn_id",
]

Interface = Literal["web", "matrix", "system"]


@dataclass(frozen=True, slots=True)
class UserMessage:
    """Text a person sent, and the files that came with it (`attachments`: kept in the
    inbox already; a voice message's text is empty until it is heard). `message_id` makes
    a resubmission idempotent (a Matrix event id, a web client's message id): the same id
    is never answered twice. `accepted`, when given, is answered once the message is
    durable (its turn stored, or a command taken): an interface acknowledges a message
    (or advances a sync token) only then. Its answer is None for a message taken now,
    or the state of its turn ("queued", "running", "done", "failed") when its id was
    received before."""

    thread_id: str
    interface: Interface
    text: str
    sender: str | None = None
    message_id: str | None = None
    accepted: Reply[str | None] | None = None
    attachments: tuple[Attachment, ...] = ()


def user_turn_id(thread_id: str, message_id: str) -> str:
    """The turn id of a person's message that carries its interface's id (a web client's
    message id, a Matrix event id): a resubmission finds its turn."""
    return f"{thread_id}/{message_id}"


@dataclass(frozen=True, slots=True)
class ReminderDue:
    """A reminder slot fired for this thread. The thread answers `accepted` once the
    reminder's turn is durable in its store (not when the message is read): the reminder
    actor marks the slot done only then, so a kill in between never loses it."""

    thread_id: str
    reminder_id: str
    slot: str
    text: str
    system: bool = False
    accepted: Reply[str | None] | None = None  # answered as `UserMessage.accepted`

    @property
    def turn_id(self) -> str:
        return reminder_turn_id(self.thread_id, self.reminder_id, self.slot)


def reminder_turn_id(thread_id: str, reminder_id: str, slot: str) -> str:
    """The turn id of a reminder slot in its thread: the same slot is one turn, always."""
    return f"{thread_id}/reminder/{reminder_id}/{slot}"


@dataclass(frozen=True, slots=True)
class HeartbeatReview:
    """Review the open goals (and, for a conversation, its last few turns) now, and
    answer `reply` with the outcome. `scope` "thread" speaks into the conversation;
    "global" (the system heartbeat thread) hands what it would say back."""

    thread_id: str
    scope: Literal["thread", "global"] = "thread"
    reply: Reply[ReviewOutcome] | None = None


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """How a review ended: "silent", "spoke" (`text` is what it said), "failed" (`text`
    says why) or "skipped" (the thread was already reviewing); `tokens` it used."""

    thread_id: str
    state: Literal["silent", "spoke", "failed", "skipped"]
    text: str = ""
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Announce:
    """Say `text` in the conversation as the assistant (what the global review said)."""

    thread_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    thread_id: str
    messages: int
    estimated_tokens: int
    has_summary: bool
    turns_done: int


@dataclass(frozen=True, slots=True)
class GetThreadInfo:
    thread_id: str
    reply: Reply[ThreadInfo]


@dataclass(frozen=True, slots=True)
class Wake:
    thread_id: str


@dataclass(frozen=True, slots=True)
class StopTurn:
    """Stop `turn_id` if it is running: the thread keeps what was streamed so far as the
    turn's answer and says it was stopped. A turn not running is left alone."""

    thread_id: str
    turn_id: str


@dataclass(frozen=True, slots=True)
class RewindTurn:
    """Take back the thread's last turn `turn_id` and answer it afresh as a new turn named
    by `message_id` (like a send's id): with the same message (regenerate) or with `text`
    (an edit of it). The old turn's message and everything after it stay in the store,
    superseded. Only while the thread is idle. `accepted` is answered once the new turn is
    durable, or failed with `ganglion.store.RewindRefused` saying why it was not taken."""

    thread_id: str
    turn_id: str
    message_id: str
    text: str | None = None
    accepted: Reply[None] | None = None


@dataclass(frozen=True, slots=True)
class ChooseVersion:
    """Show the version `turn_id` of the last turn's answer (an earlier answer, before a
    regenerate) instead of the one shown; the model sees only the one chosen from then on.
    Only while the thread is idle. `accepted` is answered once the choice is durable, or
    failed with `ganglion.store.RewindRefused` saying why it was not made."""

    thread_id: str
    turn_id: str
    accepted: Reply[None] | None = None


# The owner's answer to a question about a tool call (`DaemonBackend.decide_approval`).
ApprovalAnswer = Literal["allow", "always", "deny"]


@dataclass(frozen=True, slots=True)
class ApprovalResult:
    """What came of an answer: `settled` when it decided the question (else it was not
    open, or not asked where it was answered), and `text` to show, in a few words."""

    settled: bool
    text: str


Inbound = (
    UserMessage
    | ReminderDue
    | HeartbeatReview
    | Announce
    | GetThreadInfo
    | Wake
    | StopTurn
    | RewindTurn
    | ChooseVersion
)


@dataclass(frozen=True, slots=True)
class TurnStarted:
    thread_id: str
    turn_id: str
    source: str = "user"  # the turn's source: "user", "reminder", "heartbeat"
    input: str | None = None  # what started it (an interface labels a reminder's turn)


@dataclass(frozen=True, slots=True)
class TextDelta:
    thread_id: str
    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolActivity:
    thread_id: str
    turn_id: str
    call_id: str
    tool: str
    phase: Literal["start", "end"]
    arguments: str = ""
    result: str = ""
    ok: bool = True


@dataclass(frozen=True, slots=True)
class FinalReply:
    thread_id: str
    turn_id: str
    text: str
    outbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class FileSent:
    """The assistant sends `attachment` (a file in the conversation's inbox) into the
    conversation; `outbox_id` is its outbox row, delivered once like a reply."""

    thread_id: str
    turn_id: str
    attachment: Attachment
    outbox_id: int


@dataclass(frozen=True, slots=True)
class TurnFailed:
    thread_id: str
    turn_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    thread_id: str
    text: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalAsked:
    """A tool call of `turn_id` (a turn of `from_thread`) waits for the owner's yes,
    asked in `thread_id`: `call` is the exact call as shown, `why` the rule that asks,
    `expires_at` (epoch seconds) when it is denied if no one answers."""

    thread_id: str
    turn_id: str
    approval_id: str
    tool: str
    call: str
    why: str
    from_thread: str
    expires_at: float
    always: bool = True  # "always allow this" can be offered (a rule can name this call)


@dataclass(frozen=True, slots=True)
class ApprovalSettled:
    """Question `approval_id` (asked in `thread_id`) is answered or withdrawn:
    `outcome` once, always, owner (denied), timeout, stop, nobody; `by` who answered."""

    thread_id: str
    approval_id: str
    outcome: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadRetitled:
    """The titler gave `thread_id` the title `title` (the owner had not renamed it)."""

    thread_id: str
    title: str


Outbound = (
    TurnStarted
    | TextDelta
    | ToolActivity
    | FinalReply
    | FileSent
    | TurnFailed
    | Notice
    | ApprovalAsked
    | ApprovalSettled
    | ThreadRetitled
)


@dataclass(frozen=True, slots=True)
class ReminderInfo:
    reminder_id: str
    text: str
    schedule: str
    timezone: str
    next_fire: str | None
    thread_id: str | None
    system: bool = False
    awaiting_confirmation: bool = False


@dataclass(frozen=True, slots=True)
class AddReminder:
    """`kind` is 'at' (spec: local ISO date-time, or 'in <duration>'), 'every' (spec: a
    duration) or 'cron' (spec: a cron expression). `source` is the kind of turn the
    model set it in ('user', 'reminder', 'heartbeat'): autonomous turns may schedule
    less, and a recurring reminder the model sets waits for the owner's confirmation.
    `turn_id` is that turn (a turn may set only a few)."""

    text: str
    kind: Literal["at", "every", "cron"]
    spec: str
    reply: Reply[ReminderInfo]
    timezone: str | None = None
    thread_id: str | None = None
    system: bool = False
    source: str = "user"
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmReminder:
    """The owner allows a recurring reminder the model set from `thread_id`."""

    reminder_id: str
    thread_id: str
    reply: Reply[ReminderInfo]


@dataclass(frozen=True, slots=True)
class CancelReminder:
    reminder_id: str
    reply: Reply[bool]


@dataclass(frozen=True, slots=True)
class ListReminders:
    """The active reminders (and those awaiting confirmation) set from `thread_id` (None:
    all), plus every system reminder when `include_system`."""

    reply: Reply[tuple[ReminderInfo, ...]]
    thread_id: str | None = None
    include_system: bool = False


ReminderRequest = AddReminder | CancelReminder | ConfirmReminder | ListReminders


@dataclass(frozen=True, slots=True)
class TriggerHeartbeat:
    requested_by: str | None = None
    reply: Reply[str] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class TitleWanted:
    """`thread_id` (a web conversation) was just answered: the titler names it from its
    first exchange, unless that was done or tried already, or the owner renamed it."""

    thread_id: str
