"""The heartbeat actor: reviews fanned out to every active conversation, on a schedule.

At each beat (every `heartbeat.interval_seconds`, drift-free; `TriggerHeartbeat` asks for
one now) it reads `HEARTBEATS.txt` and the conversations active within
`heartbeat.active_window` seconds (from the store: no thread is woken to ask), then:

1. asks each active conversation for a review (`HeartbeatReview`) with `send_nowait`: it
   never waits on a slow thread. A conversation whose previous review has not finished is
   skipped, not asked twice; one with no activity since its last review is skipped when
   there are no active goals (no model call at all, and a passivated thread stays asleep);
2. when there are active goals, asks the system heartbeat thread for the global review,
   and speaks what it says (`Announce`) into `heartbeat.deliver_to`, else into the most
   recently active conversation, else only into the log.

Outside `heartbeat.active_hours` a beat is skipped, and so is every beat of a day once
the reviews have used that day's budget (`paused`; `/heartbeat` still asks, and is told). Each beat logs one line when its
reviews are in (run, skipped and why, silent, delivered, failed, tokens), and the totals
are kept for `statistics()`. The reviews themselves run in the threads
(`ganglion.threads.review`), so a thread that fails or crashes during its review costs that
review only.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import trio

from ganglion.beats import ActiveHours, next_beat
from ganglion.config import HeartbeatConfig
from ganglion.datadir import GOALS_FILE
from ganglion.entries import active_lines
from ganglion.ids import interface_for
from ganglion.messages import (
    Announce,
    HeartbeatReview,
    Inbound,
    ReviewOutcome,
    TriggerHeartbeat,
)
from ganglion.safefs import NotFound, SafePathError, open_dir
from ganglion.store import Activity, ThreadActivity
from ganglion_actors import ActorRef, ActorStopped, ChildSpec, Inbox, MailboxFull, Registry, Reply

__all__ = ["HEARTBEAT_THREAD", "HeartbeatStatistics", "heartbeat_child", "serve_heartbeat"]

log = logging.getLogger(__name__)

HEARTBEAT_THREAD = "system:heartbeat"
# The review reads at most this much of HEARTBEATS.txt (the prompt cuts goals further).
MAX_GOALS_BYTES = 64 * 1024
# A beat's line is logged when its reviews are in, or after this long (a slow model).
REVIEW_WAIT = 600.0

Wall = Callable[[], datetime]
# True while reviews are stopped for the day (their budget is used: `ganglion.usage`).
Paused = Callable[[], bool]


def _wall_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class HeartbeatStatistics:
    """Totals since the daemon started: beats, reviews by outcome, skips by reason,
    and the tokens reviews used (the server's figures, estimated when it gave none)."""

    beats: int = 0
    reviews: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    tokens: int = 0


def heartbeat_child(
    config: HeartbeatConfig,
    data_dir: Path,
    threads: Registry[str, Inbound],
    activity: Activity,
    timezone: str,
    *,
    ref: ActorRef[TriggerHeartbeat],
    statistics: HeartbeatStatistics | None = None,
    paused: Paused | None = None,
) -> ChildSpec[TriggerHeartbeat]:
    """The heartbeat as the root supervisor runs it, on `ref` (reserved before the tree
    starts). Permanent; its crashes count toward the root's restart intensity."""
    return ChildSpec(
        "heartbeat",
        partial(
            serve_heartbeat,
            config,
            data_dir / GOALS_FILE,
            threads,
            activity,
            timezone,
            statistics=statistics,
            paused=paused,
        ),
        ref=ref,
    )


async def serve_heartbeat(
    config: HeartbeatConfig,
    heartbeats_file: Path,
    threads: Registry[str, Inbound],
    activity: Activity,
    timezone: str,
    inbox: Inbox[TriggerHeartbeat],
    *,
    statistics: HeartbeatStatistics | None = None,
    paused: Paused | None = None,
    wall: Wall = _wall_now,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    heartbeat = _Heartbeat(
        config, heartbeats_file, threads, activity, ZoneInfo(timezone), wall, statistics
    )
    heartbeat.paused = paused
    async with trio.open_nursery() as nursery:
        task_status.started()
        interval = config.interval_seconds
        due = trio.current_time() + interval if config.enabled else math.inf
        while True:
            request: TriggerHeartbeat | None = None
            with trio.move_on_at(due):
                try:
                    request = await inbox.receive()
                except trio.EndOfChannel:
                    nursery.cancel_scope.cancel()
                    return
            if request is None:
                nursery.start_soon(heartbeat.beat, nursery, False, None)
                due = next_beat(due, interval, trio.current_time())
            else:
                nursery.start_soon(heartbeat.beat, nursery, True, request.reply)


class _Heartbeat:
    def __init__(
        self,
        config: HeartbeatConfig,
        heartbeats_file: Path,
        threads: Registry[str, Inbound],
        activity: Activity,
        zone: ZoneInfo,
        wall: Wall,
        statistics: HeartbeatStatistics | None,
    ) -> None:
        self.config = config
        self.heartbeats_file = heartbeats_file
        self.threads = threads
        self.activity = activity
        self.zone = zone
        self.wall = wall
        self.stats = statistics if statistics is not None else HeartbeatStatistics()
        self.hours = ActiveHours.parse(config.active_hours) if config.active_hours else None
        self.in_flight: set[str] = set()
        self.paused: Paused | None = None

    async def beat(self, nursery: trio.Nursery, forced: bool, reply: Reply[str] | None) -> None:
        summary = await self._beat(nursery, forced)
        if reply is not None:
            reply.send(summary)

    async def _beat(self, nursery: trio.Nursery, forced: bool) -> str:
        self.stats.beats += 1
        now = self.wall()
        if not forced and self.hours and not self.hours.contains(now.astimezone(self.zone).time()):
            self.stats.skipped["outside hours"] += 1
            log.info("heartbeat: skipped, outside the active hours %s", self.config.active_hours)
            return "Skipped: outside the active hours."
        if not forced and self.paused is not None and self.paused():
            self.stats.skipped["budget"] += 1
            log.info("heartbeat: skipped, the day's heartbeat budget is used")
            return "Skipped: the day's heartbeat budget is used."
        goals = active_lines(await trio.to_thread.run_sync(_read_goals, self.heartbeats_file))
        since = now.timestamp() - self.config.active_window
        active = [
            a
            for a in await self.activity.thread_activity(since)
            if interface_for(a.thread_id) != "system"
        ]
        skipped: Counter[str] = Counter()
        asked: list[tuple[str, Reply[ReviewOutcome]]] = []
        for activity in active:
            if not goals and not _new_activity(activity):
                skipped["no activity"] += 1
                continue
            self._ask(activity.thread_id, "thread", asked, skipped)
        if goals:
            self._ask(HEARTBEAT_THREAD, "global", asked, skipped)
        target = self._speak_to(active)
        outcomes = await self._gather(nursery, asked, target)
        for thread_id, _ in asked:
            if thread_id not in outcomes:
                skipped["still running"] += 1
        return self._settle(outcomes, skipped)

    async def _gather(
        self,
        nursery: trio.Nursery,
        asked: list[tuple[str, Reply[ReviewOutcome]]],
        target: str | None,
    ) -> dict[str, ReviewOutcome]:
        """The outcomes that come in within `REVIEW_WAIT`. Each review is waited for in
        the actor's nursery however long it takes: its thread keeps its place
        (`in_flight`) until then, and a late global review still speaks."""
        outcomes: dict[str, ReviewOutcome] = {}
        all_in = trio.Event()
        left = len(asked)

        async def wait(thread_id: str, reply: Reply[ReviewOutcome]) -> None:
            nonlocal left
            try:
                outcome = await reply.wait()
            except Exception as exc:  # the thread died during its review
                outcome = ReviewOutcome(thread_id, "failed", repr(exc))
            finally:
                self.in_flight.discard(thread_id)
            if thread_id == HEARTBEAT_THREAD and outcome.state == "spoke":
                self._announce(outcome.text, target)
            outcomes[thread_id] = outcome
            left -= 1
            if not left:
                all_in.set()

        for thread_id, reply in asked:
            nursery.start_soon(wait, thread_id, reply)
        if asked:
            with trio.move_on_after(REVIEW_WAIT):
                await all_in.wait()
        return dict(outcomes)

    def _ask(
        self,
        thread_id: str,
        scope: Literal["thread", "global"],
        asked: list[tuple[str, Reply[ReviewOutcome]]],
        skipped: Counter[str],
    ) -> None:
        if thread_id in self.in_flight:
            skipped["busy"] += 1
            return
        reply: Reply[ReviewOutcome] = Reply()
        try:
            self.threads.send_nowait(thread_id, HeartbeatReview(thread_id, scope, reply))
        except MailboxFull:
            skipped["busy"] += 1
            return
        except ActorStopped:
            skipped["stopping"] += 1
            return
        self.in_flight.add(thread_id)
        asked.append((thread_id, reply))

    def _speak_to(self, active: list[ThreadActivity]) -> str | None:
        if self.config.deliver_to:
            return self.config.deliver_to
        latest = max(active, key=lambda a: a.last_activity, default=None)
        return latest.thread_id if latest else None

    def _settle(self, outcomes: dict[str, ReviewOutcome], skipped: Counter[str]) -> str:
        counts: Counter[str] = Counter(outcome.state for outcome in outcomes.values())
        tokens = sum(outcome.tokens for outcome in outcomes.values())
        self.stats.reviews.update(counts)
        self.stats.skipped.update(skipped)
        self.stats.tokens += tokens
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none"
        line = (
            f"{sum(counts.values())} review(s): {counts['silent']} silent, "
            f"{counts['spoke']} delivered, {counts['failed']} failed, "
            f"{counts['skipped']} busy; skipped: {why}; {tokens} tokens"
        )
        log.info("heartbeat: %s", line)
        return f"Heartbeat: {line}."

    def _announce(self, text: str, target: str | None) -> None:
        if target is None:
            log.info("heartbeat (no conversation to speak in) says: %s", text)
            return
        try:
            self.threads.send_nowait(target, Announce(target, text))
        except (MailboxFull, ActorStopped) as exc:
            log.warning("heartbeat: could not speak in %s (%r): %s", target, exc, text)


def _new_activity(activity: ThreadActivity) -> bool:
    return activity.last_review is None or activity.last_activity > activity.last_review


def _read_goals(heartbeats_file: Path) -> str:
    # Through the data directory's handle: a HEARTBEATS.txt planted as a link (to
    # /proc/self/environ, say) would otherwise be sent to the model as goals.
    try:
        with open_dir(heartbeats_file.parent) as directory:
            data, _ = directory.read_bytes(heartbeats_file.name, limit=MAX_GOALS_BYTES)
    except NotFound:
        return ""
    except SafePathError as exc:
        log.warning("heartbeat: %s is not read: %s", heartbeats_file.name, exc)
        return ""
    return data.decode("utf-8", errors="replace")
