"""How fast restarts may come: a jittered exponential backoff between the restarts of one
actor, a restart-intensity window that says when restarting has become pointless, and
the one restart loop the supervisor and the registry both run (`restart_loop`).

Both read time from `trio.current_time()`, so tests drive them with trio's mock clock.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import count

import trio

__all__ = ["DEFAULT_BACKOFF", "Backoff", "RestartWindow", "restart_loop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `initial * factor**attempt`, capped at `maximum`, then moved
    by up to +/- `jitter` (a fraction of the delay) so that actors which crashed together
    do not restart in lockstep."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2
    # A run at least this long was healthy: the next failure starts a new streak at
    # `initial`. None: the supervisor's restart-intensity period.
    reset_after: float | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number `attempt` (0 for the first of a streak)."""
        base = min(self.maximum, self.initial * self.factor**attempt)
        return max(0.0, base * (1 + self.jitter * rng.uniform(-1.0, 1.0)))

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The delays of one streak of retries, the first one first (without end: the
        caller decides when to give up)."""
        return (self.delay(attempt, rng) for attempt in count())


DEFAULT_BACKOFF = Backoff()


class RestartWindow:
    """Counts restarts within a sliding `period` of seconds; more than `intensity` of them
    means the fault is not transient and restarting must stop (OTP restart intensity)."""

    def __init__(self, intensity: int, period: float) -> None:
        self.intensity = intensity
        self.period = period
        self._times: deque[float] = deque()

    def exceeded_after_one_more(self) -> bool:
        """Record a restart now; True if that makes more than `intensity` in the period."""
        now = trio.current_time()
        self._times.append(now)
        while self._times[0] < now - self.period:
            self._times.popleft()
        return len(self._times) > self.intensity


async def restart_loop(
    name: str,
    run_once: Callable[[], Awaitable[BaseException | None]],
    *,
    backoff: Backoff,
    period: float,
    rng: random.Random,
    restarts: Callable[[BaseException | None], bool],
    too_many: Callable[[BaseException | None], Awaitable[bool]],
    stopped: Callable[[], bool],
    restarted: Callable[[], None],
) -> None:
    """Run `run_once` (one incarnation; it returns its crash, None after a normal return)
    again and again, the way the supervisor and the registry restart their children.

    After each incarnation: `restarts(crash)` says whether to run it again at all (its
    restart type); `too_many(crash)` records the restart in the caller's intensity window
    and says whether to give up instead (it may raise, to escalate); then the backoff
    delay, after which `stopped()` may still end it; `restarted()` counts the restart.

    The backoff's streak (its attempt number) starts afresh after an incarnation that ran
    at least `backoff.reset_after` seconds (default: `period`, the intensity window): it
    was healthy, so its crash is a new fault.
    """
    healthy_after = backoff.reset_after or period
    streak = 0  # consecutive restarts: the backoff attempt
    while True:
        began = trio.current_time()
        crash = await run_once()
        if not restarts(crash):
            return
        if trio.current_time() - began >= healthy_after:
            streak = 0  # it ran fine for a while: this is a new fault
        if await too_many(crash):
            return
        delay = backoff.delay(streak, rng)
        log.info("%s: restarting in %.1f s", name, delay)
        await trio.sleep(delay)
        if stopped():
            return
        streak += 1
        restarted()
