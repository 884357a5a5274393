"""What the running daemon is doing: gathered for `GET /api/status` (and `/metrics`),
printed by `ganglion status`.

`DaemonView` is what the tree hands the two endpoints: the shared services, the root's
children (their references, added as each starts), and `Activity`, which counts turns and
tool calls from the outbound events as the delivery router sees them (nothing polls, and
no actor had to learn about monitoring). `snapshot` reads everything else from the
existing `statistics()` methods, what the heartbeat and Matrix actors report of
themselves (`Services.heartbeat`, `Services.matrix`) and the reminder store, and returns
plain JSON.

`statustext.render` turns a snapshot into the text `ganglion status` prints.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import trio

from ganglion.approval import call_text
from ganglion.heartbeat.actor import HEARTBEAT_THREAD
from ganglion.messages import FinalReply, Outbound, ToolActivity, TurnFailed, TurnStarted
from ganglion.ops.loop import LoopSteps
from ganglion.reminders.actor import SYSTEM_REMINDER_THREAD
from ganglion.threads.approvals import Approver
from ganglion.usage import Meter

if TYPE_CHECKING:
    from ganglion.config import MatrixConfig
    from ganglion.matrix.stats import MatrixStatistics
    from ganglion.runtime import Services
    from ganglion_actors import ActorRef

__all__ = ["Activity", "DaemonView", "ganglion_version", "matrix_status", "snapshot"]

# Threads whose last activity is remembered (the most recent ones).
RECENT_THREADS = 200
# Buckets of the turn-latency histogram, in seconds.
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
NEXT_REMINDERS = 5
UNKNOWN_TOOL = "unknown"
SYSTEM_THREADS = frozenset({HEARTBEAT_THREAD, SYSTEM_REMINDER_THREAD})


@dataclass
class Activity:
    """Turns and tool calls, counted from the outbound events (`DeliveryRouter.observe`).

    A turn starts with `TurnStarted` and ends with its `FinalReply` or `TurnFailed`; a
    quiet heartbeat review ends without either and is counted as started only.
    `latency_counts[i]` counts finished turns that took at most `LATENCY_BUCKETS[i]`.

    Every name it counts by comes from a closed set, since /metrics may be served without
    the token: a tool that is not registered (a name the model made up, whatever it
    holds) is counted as `unknown`, a system thread other than the known ones as
    `system:other`.
    """

    turns_started: int = 0
    turns_answered: int = 0
    turns_failed: int = 0
    latency_seconds: float = 0.0
    latency_counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    tool_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    system_turns: Counter[str] = field(default_factory=Counter)  # heartbeat reviews, …
    last_activity: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _running: dict[str, tuple[str, float]] = field(default_factory=dict)
    # The registered tools' names now (MCP servers come and go): set by the view.
    tool_names: Callable[[], Collection[str]] = frozenset

    def observe(self, event: Outbound) -> None:
        self._touch(event.thread_id)
        match event:
            case TurnStarted(thread_id=thread, turn_id=turn):
                self.turns_started += 1
                if thread.startswith("system:"):
                    known = thread in SYSTEM_THREADS
                    self.system_turns[thread if known else "system:other"] += 1
                self._running[thread] = (turn, trio.current_time())
            case FinalReply(thread_id=thread, turn_id=turn):
                self.turns_answered += 1
                self._finish(thread, turn)
            case TurnFailed(thread_id=thread, turn_id=turn):
                self.turns_failed += 1
                self._finish(thread, turn)
            case ToolActivity(phase="end", tool=tool, ok=ok):
                name = tool if tool in self.tool_names() else UNKNOWN_TOOL
                self.tool_calls[name, "ok" if ok else "error"] += 1
            case _:
                pass

    def _touch(self, thread_id: str) -> None:
        self.last_activity[thread_id] = time.time()
        self.last_activity.move_to_end(thread_id)
        while len(self.last_activity) > RECENT_THREADS:
            self.last_activity.popitem(last=False)

    def _finish(self, thread_id: str, turn_id: str) -> None:
        running = self._running.get(thread_id)
        if running is None or running[0] != turn_id:
            return
        del self._running[thread_id]
        took = trio.current_time() - running[1]
        self.latency_seconds += took
        for index, bound in enumerate(LATENCY_BUCKETS):
            if took <= bound:
                self.latency_counts[index] += 1


@dataclass(eq=False)
class DaemonView:
    """What `/api/status` and `/metrics` may read of the running daemon."""

    services: Services
    activity: Activity = field(default_factory=Activity)
    actors: list[ActorRef[Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    loop: LoopSteps | None = None  # with logging.event_loop_stats: installed by the tree

    def __post_init__(self) -> None:
        tools = self.services.deps.tools
        self.activity.tool_names = lambda: tools.names
        self.services.router.observe(self.activity.observe)


def ganglion_version() -> str:
    try:
        return version("ganglion")
    except PackageNotFoundError:
        return "unknown"


async def snapshot(view: DaemonView) -> dict[str, Any]:
    """Everything `ganglion status` shows, as JSON-ready values."""
    services, activity = view.services, view.activity
    config = services.config
    llm = services.deps.models.statistics()
    registry = services.threads.statistics()
    reminders = services.reminder_store
    upcoming = [r for r in await reminders.active() if r.next_fire is not None]
    return {
        "version": ganglion_version(),
        "uptime_seconds": round(time.time() - view.started_at, 1),
        "draining": services.stop_requested.is_set(),
        "loop": view.loop.snapshot() if view.loop is not None else None,
        "actors": [_actor(ref) for ref in view.actors],
        "threads": {
            "live": registry.live,
            "spawned": registry.spawned,
            "passivated": registry.passivated,
            "restarts": registry.restarts,
            "recent": [
                {"thread_id": thread, "last_activity": at, "live": thread in live}
                for live in [services.threads.live_keys()]
                for thread, at in reversed(activity.last_activity.items())
            ][:20],
        },
        "turns": {
            "started": activity.turns_started,
            "answered": activity.turns_answered,
            "failed": activity.turns_failed,
            "latency_seconds": round(activity.latency_seconds, 3),
            "system": dict(activity.system_turns),
        },
        "tools": [
            {"tool": tool, "outcome": outcome, "calls": calls}
            for (tool, outcome), calls in sorted(activity.tool_calls.items())
        ],
        "heartbeat": {
            "beats": services.heartbeat.beats,
            "reviews": dict(services.heartbeat.reviews),
            "skipped": dict(services.heartbeat.skipped),
            "tokens": services.heartbeat.tokens,
        },
        "reminders": {
            "active": len(upcoming),
            "ledger": await reminders.ledger_counts(),
            "next": [
                {"id": r.id, "text": r.text[:80], "at": r.next_fire.isoformat()}
                for r in upcoming[:NEXT_REMINDERS]
                if r.next_fire is not None
            ],
        },
        "model": {
            "endpoint": config.llm.base_url,
            "model": config.llm.model,
            "requests": llm.requests,
            "answered": llm.answered,
            "retries": llm.retries,
            "failures": llm.failures,
            "fallbacks_used": llm.fallbacks_used,
            "errors": dict(llm.errors),
            "latency_seconds": round(llm.latency_seconds, 3),
            "tokens_in": llm.usage.prompt_tokens,
            "tokens_out": llm.usage.completion_tokens,
            "models": {
                name: {"model": endpoint.model, "endpoint": endpoint.base_url}
                for name, endpoint in config.llm.models.items()
            },
            "chosen": dict(await services.store.library.chosen_models()),
        },
        "usage": await _usage_status(services.deps.meter),
        "approvals": await _approvals_status(services.deps.approver),
        "matrix": matrix_status(config.matrix, services.matrix) if config.matrix.enabled else None,
    }


async def _usage_status(meter: Meter) -> dict[str, Any]:
    """Today's usage by source, and what each budget has left (`ganglion status`)."""
    today = await meter.today()
    return {
        "day": meter.day,
        "sources": {
            source: {
                "calls": totals.calls,
                "tokens_in": totals.prompt,
                "tokens_out": totals.completion,
                "cached": totals.cached,
                "estimated_calls": totals.estimated,
                "cost": dict(totals.costs),
            }
            for source, totals in today.items()
        },
        "budgets": {
            field: {"spent": spent, "limit": limit, "stopped": stopped}
            for field, (spent, limit, stopped) in meter.budgets().items()
        },
    }


async def _approvals_status(approver: Approver) -> dict[str, Any]:
    """The questions waiting for the owner, and how every question so far ended."""
    return {
        "pending": [
            {
                "id": a.id,
                "call": call_text(a.tool, a.arguments),
                "asked_in": a.asked_in,
                "from": a.thread_id,
                "since": round(a.created_at, 3),
            }
            for a in await approver.pending()
        ],
        "outcomes": dict(await approver.outcomes()),
    }


def matrix_status(config: MatrixConfig, stats: MatrixStatistics) -> dict[str, Any]:
    """The Matrix part of a snapshot (`ganglion status`)."""
    now = stats.clock()
    return {
        "homeserver": config.homeserver,
        "user_id": config.user_id,
        "state": stats.state,
        "syncs": stats.syncs,
        "last_sync_at": stats.last_sync_at,
        "last_sync_age_seconds": _age(now, stats.last_sync_at),
        "consecutive_errors": stats.consecutive_errors,
        "errors": dict(stats.errors),
        "last_error": stats.last_error,
        "last_error_age_seconds": _age(now, stats.last_error_at),
        "joined_rooms": stats.joined_rooms,
        "submitted": stats.submitted,
        "undecryptable": stats.undecryptable,
        "decrypted_late": stats.decrypted_late,
        "invites": {"accepted": stats.invites_accepted, "refused": stats.invites_refused},
        "e2e": {
            "device_id": stats.device_id or config.device_id,
            "ed25519": stats.ed25519_key,
            "one_time_keys": stats.one_time_keys,
        },
        "cross_signing": _identity(stats),
        "trust": {
            "verified_devices_only": stats.verified_devices_only,
            "pinned_identities": stats.pinned_identities,
            "refused": dict(stats.refused_by_trust),
        },
        "late_key_notices": stats.late_key_notices,
    }


def _identity(stats: MatrixStatistics) -> dict[str, Any] | None:
    identity = stats.identity
    if identity is None:
        return None
    return {
        "published": identity.published,
        "device_signed": identity.device_signed,
        "recovery_key_set": identity.recovery_key_set,
        "master_key": identity.master_key,
        "problem": identity.problem,
    }


def _age(now: float, then: float | None) -> float | None:
    return round(max(0.0, now - then), 1) if then is not None else None


def _actor(ref: ActorRef[Any]) -> dict[str, Any]:
    stats = ref.statistics()
    state = "running" if stats.running else ("stopped" if stats.closed else "restarting")
    return {
        "name": stats.name,
        "state": state,
        "restarts": stats.restarts,
        "mailbox": stats.mailbox_depth,
        "capacity": stats.mailbox_capacity,
    }
