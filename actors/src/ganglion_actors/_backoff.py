"""How fast restarts may come: a jittered exponential backoff between the restarts of one
actor, and a restart-intensity window that says when restarting has become pointless.

Both read time from `trio.current_time()`, so tests drive them with trio's mock clock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import trio

__all__ = ["DEFAULT_BACKOFF", "Backoff", "RestartWindow"]


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
