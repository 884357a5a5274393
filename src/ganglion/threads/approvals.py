"""The approver: a tool call the owner's policy does not allow on its own waits for their
yes, asked where they are, and runs once or not at all.

One `Approver` per daemon run, shared by the thread actors (which ask and wait) and the
interfaces (which answer, through `DaemonBackend.decide_approval`). For each call:

1. The policy decides (`ganglion.approval.decide`): allowed calls run, denied ones get a
   clear tool result and the turn goes on.
2. A question is stored (`store.approvals`) before it is asked: in the conversation the
   call came from, or for a system turn in `tools.approval.ask_in` (None: the owner's
   most recently active conversation); no one to ask: denied (`nobody`).
3. The turn waits (the model waits; every other conversation goes on) until the answer
   is stored, or `timeout_seconds` pass (denied: `timeout`), or the owner stops the turn
   (denied: `stop`, by the thread actor). A daemon stopping leaves the question open.
4. An allowed call is marked `running` in the store before it runs, so a call that began
   to run before a kill is never run again: its result says it ran and was lost.

After a restart the turn resumes (`resume_calls`): an open question is asked again
(once: the same row), an allowed call runs, a running one is not run again.

The answer is stored first, then the waiting turn is woken: the first answer wins, and
an answer that comes while the turn is not waiting (after a restart, before it resumed)
is found in the store when it does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import trio

from ganglion.approval import Verdict, call_text, decide, rule_for
from ganglion.approval.added import AddedRule, AddedRules
from ganglion.config import Config
from ganglion.datadir import APPROVALS_FILE
from ganglion.delivery import DeliveryRouter
from ganglion.ids import interface_for
from ganglion.messages import ApprovalAnswer, ApprovalAsked, ApprovalResult, ApprovalSettled
from ganglion.store import Approval, Approvals, Turn
from ganglion.transcript import ChatMessage, ToolCall

__all__ = [
    "Approver",
    "Permit",
    "asked_event",
    "call_key",
    "denied_text",
    "open_calls",
]

log = logging.getLogger(__name__)

RAN_RESULT_LOST: Final = (
    "error: this call was approved and began to run before Ganglion restarted; its result "
    "was lost. It is not run again: check what it did before you run it again."
)
_DENIED: Final[dict[str, str]] = {
    "owner": "the owner denied it",
    "timeout": "no answer came in time ({minutes}), so it was denied",
    "stop": "the owner stopped the turn while it waited for approval",
    "nobody": "it needs the owner's approval and there was no conversation to ask in",
    "ended": "the turn ended before an answer came",
}

# Where a system turn asks: the conversation (thread id) or None, found when asked.
AskIn = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Permit:
    """Whether a call may run now; when not, `result` is the tool result the model gets.
    `approval`: the question it went through (None: the policy allowed it)."""

    run: bool
    result: str | None = None
    approval: Approval | None = None


def denied_text(call: str, outcome: str, why: str = "", timeout: float = 0) -> str:
    """The tool result of a call that did not run."""
    if outcome == "policy":
        return f"error: not run: the owner's policy denies this call ({why}): {call}"
    reason = _DENIED.get(outcome, "it was denied").format(minutes=_minutes(timeout))
    return f"error: not run: {reason}: {call}. Do not try it another way; tell the owner."


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def asked_event(approval: Approval) -> ApprovalAsked:
    """The event that asks `approval`'s question in its conversation."""
    return ApprovalAsked(
        approval.asked_in,
        approval.turn_id,
        approval.id,
        approval.tool,
        call_text(approval.tool, approval.arguments),
        approval.why,
        approval.thread_id,
        approval.expires_at or approval.created_at,
        always=rule_for(approval.tool, approval.arguments) is not None,
    )


def call_key(message_id: int, call: ToolCall) -> str:
    """What names one call for good: the stored message that made it, and its id (model
    servers number their calls afresh in every answer, `call_0` again and again)."""
    return f"{message_id}/{call.id}"


def open_calls(history: list[ChatMessage], last_assistant: ChatMessage | None) -> list[ToolCall]:
    """The calls of `last_assistant` (a turn's last message with tool calls) that have no
    result in `history` (what came after it)."""
    if last_assistant is None:
        return []
    answered = {m.tool_call_id for m in history if m.role == "tool"}
    return [call for call in last_assistant.tool_calls if call.id not in answered]


class Approver:
    """The questions of one daemon run (see the module docstring).

    Resource handling: one `trio.Event` per question a turn waits on, dropped when it
    is answered. Error handling: store errors propagate to the turn (which fails and is
    retried after a restart, the question stored); a rule that cannot be written is said
    in the answer and the call is allowed once.
    """

    def __init__(
        self,
        config: Config,
        approvals: Approvals,
        router: DeliveryRouter,
        now: Callable[[], datetime],
        ask_in: AskIn,
    ) -> None:
        self._config = config
        self._approvals = approvals
        self._router = router
        self._now = now
        self._ask_in = ask_in
        self._added = AddedRules(config.data_dir)
        self._limiter = trio.CapacityLimiter(1)
        self._waiting: dict[str, trio.Event] = {}
        self.decided: dict[str, int] = {}  # outcomes decided in this run (the metrics)

    @property
    def timeout(self) -> float:
        return self._config.tools.approval.timeout_seconds

    async def verdict(self, call: ToolCall) -> Verdict:
        added = await trio.to_thread.run_sync(self._added.load, limiter=self._limiter)
        return decide(
            self._config.tools,
            call.name,
            call.arguments,
            data_dir=self._config.data_dir,
            added=added,
        )

    async def permit(self, thread_id: str, turn: Turn, call: ToolCall, key: str) -> Permit:
        """Whether `call` of `turn` (a turn of `thread_id`; `key`: its `call_key`) may
        run: allowed by the policy, or asked and answered yes. Waits for the answer."""
        existing = await self._approvals.for_call(turn.turn_id, key)
        if existing is not None:
            return await self._settle(existing)
        verdict = await self.verdict(call)
        shown = call_text(call.name, call.arguments)
        if verdict.decision == "allow":
            return Permit(True)
        if verdict.decision == "deny":
            log.info("tool call in %s denied by the policy (%s): %s", thread_id, verdict.why, shown)
            return Permit(False, denied_text(shown, "policy", verdict.why))
        asked_in = thread_id if interface_for(thread_id) != "system" else await self._ask_in()
        approval = await self._approvals.open(
            thread_id,
            turn.turn_id,
            key,
            call.name,
            call.arguments,
            asked_in or thread_id,
            verdict.why,
        )
        if asked_in is None and approval.state == "asked":
            log.info("tool call in %s denied: no conversation to ask in: %s", thread_id, shown)
            await self._decide(approval, allowed=False, outcome="nobody", by="ganglion")
            approval = await self._reread(approval)
        return await self._settle(approval)

    async def _settle(self, approval: Approval) -> Permit:
        """Wait for `approval`'s answer if it is open, then what it allows."""
        if approval.state == "asked":
            approval = await self._wait(approval)
        shown = call_text(approval.tool, approval.arguments)
        match approval.state:
            case "allowed":
                if await self._approvals.start(approval.id):
                    return Permit(True, approval=approval)
                return Permit(False, RAN_RESULT_LOST, approval)
            case "running":
                return Permit(False, RAN_RESULT_LOST, approval)
            case _:
                outcome = approval.outcome or "owner"
                return Permit(False, denied_text(shown, outcome, timeout=self.timeout), approval)

    async def _wait(self, approval: Approval) -> Approval:
        event = self._waiting.setdefault(approval.id, trio.Event())
        try:
            await self._approvals.asking(approval.id, self._now().timestamp() + self.timeout)
            approval = await self._reread(approval)  # answered before we began to wait?
            if approval.state != "asked":
                return approval
            await self._router.deliver(asked_event(approval))
            log.info(
                "tool call in %s waits for the owner (question %s in %s, %s)",
                approval.thread_id,
                approval.id,
                approval.asked_in,
                approval.why,
            )
            with trio.move_on_after(self.timeout):
                await event.wait()
            approval = await self._reread(approval)
            if approval.state == "asked":
                log.info("question %s unanswered after %gs: denied", approval.id, self.timeout)
                await self._decide(approval, allowed=False, outcome="timeout", by="ganglion")
                approval = await self._reread(approval)
            return approval
        finally:
            if self._waiting.get(approval.id) is event:
                del self._waiting[approval.id]

    async def _reread(self, approval: Approval) -> Approval:
        return await self._approvals.get(approval.id) or approval

    async def _decide(
        self,
        approval: Approval,
        *,
        allowed: bool,
        outcome: str,
        by: str,
        interface: str = "ganglion",
    ) -> bool:
        """Store the decision (the first wins), tell the conversation it was asked in,
        wake the turn; False when it was decided already."""
        decided = await self._approvals.decide(
            approval.id, allowed=allowed, outcome=outcome, by=by, interface=interface
        )
        if decided is None:
            return False
        self.decided[outcome] = self.decided.get(outcome, 0) + 1
        log.info(
            "question %s (%s in %s): %s by %s from %s",
            approval.id,
            call_text(approval.tool, approval.arguments),
            approval.thread_id,
            outcome,
            by,
            interface,
        )
        await self._router.deliver(ApprovalSettled(approval.asked_in, approval.id, outcome, by))
        event = self._waiting.get(approval.id)
        if event is not None:
            event.set()
        return True

    async def answer(
        self, approval_id: str, answer: ApprovalAnswer, *, by: str, interface: str, asked_in: str
    ) -> ApprovalResult:
        """The owner's answer to question `approval_id`, from conversation `asked_in`
        (where it must have been asked); what came of it, in a few words."""
        approval = await self._approvals.get(approval_id)
        if approval is None or approval.asked_in != asked_in:
            return ApprovalResult(False, "There is no such question in this conversation.")
        if approval.state != "asked":
            outcome = approval.outcome or approval.state
            return ApprovalResult(False, f"That question was answered already ({outcome}).")
        shown = call_text(approval.tool, approval.arguments)
        outcome = {"allow": "once", "always": "always", "deny": "owner"}[answer]
        note = ""
        if answer == "always":
            note = await self._add_rule(approval, by, interface)
            if note:
                outcome = "once"
        if not await self._decide(
            approval, allowed=answer != "deny", outcome=outcome, by=by, interface=interface
        ):
            return ApprovalResult(False, "That question was answered already.")
        verb = {"once": "Allowed once", "always": "Always allowed", "owner": "Denied"}[outcome]
        return ApprovalResult(True, f"{verb}: {shown}{note}")

    async def _add_rule(self, approval: Approval, by: str, interface: str) -> str:
        """Add the rule "always allow this" names; "" when added, else why not."""
        rule = rule_for(approval.tool, approval.arguments)
        if rule is None:
            return " (no rule can name exactly this call, so it is allowed this once)"
        stamp = self._now().strftime("%Y-%m-%d %H:%M")
        added = AddedRule(**rule.model_dump(), added=f"{stamp} by {by} ({interface})")
        try:
            ok = await trio.to_thread.run_sync(self._added.add, added, limiter=self._limiter)
        except OSError as exc:
            log.warning("the rule for question %s was not written: %s", approval.id, exc)
            ok = False
        if not ok:
            return f" (the rule could not be written to {APPROVALS_FILE}, so it is allowed once)"
        log.info("rule added to approvals.yaml by %s: %s", by, added.model_dump(exclude_none=True))
        return ""

    async def withdraw(self, turn_id: str, outcome: Literal["stop", "ended"] = "stop") -> None:
        """Deny what `turn_id` still asks: the owner stopped it (`stop`), or it ended
        without the answer (`ended`: failed, or a review cut off by a restart)."""
        for approval in await self._approvals.open_questions():
            if approval.turn_id == turn_id:
                await self._decide(approval, allowed=False, outcome=outcome, by="owner")

    async def asked(self, turn_id: str, key: str) -> bool:
        """Whether the owner was asked about the call `key` names (open or decided)."""
        return await self._approvals.for_call(turn_id, key) is not None

    async def pending(self) -> tuple[Approval, ...]:
        return await self._approvals.open_questions()

    async def outcomes(self) -> Mapping[str, int]:
        """How every question so far ended, by outcome (the store's count)."""
        return await self._approvals.outcomes()

    @property
    def waiting(self) -> int:
        """The questions a turn of this run waits on now."""
        return len(self._waiting)

    async def questions_in(self, thread_id: str) -> list[ApprovalAsked]:
        """The open questions asked in `thread_id` (what a reloaded page shows)."""
        return [asked_event(a) for a in await self._approvals.open_questions(thread_id)]
