"""Budgets: which daily limits a call counts against, and whether it still fits (pure).

Rules:

1. Every call counts against `budgets.daily_tokens` (plus what the owner allowed beyond
   it today, `/budget +N`); heartbeat reviews also against `heartbeat_daily_tokens`;
   everything else that runs in a system conversation (system reminders) against
   `system_daily_tokens`.
2. A call is made only when, for each of its scopes, what the day spent plus what calls
   in flight reserved plus this call's need (the request's estimate and its answer cap)
   is at most the limit: a call that lands exactly on the limit is made; one token more
   is not.
3. Autonomous work (heartbeat reviews, reminders, system conversations) that is refused
   stops for the day; an owner's turn that is refused is not made, and the owner is told
   the numbers and how to raise the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from ganglion.config import BudgetsConfig
from ganglion.ids import interface_for
from ganglion.spend import Source

__all__ = [
    "FIELDS",
    "SCOPES",
    "Overrun",
    "Scope",
    "is_autonomous",
    "limit_of",
    "overrun",
    "scopes_of",
]

Scope = Literal["daily", "heartbeat", "system"]
SCOPES: Final[tuple[Scope, ...]] = ("daily", "heartbeat", "system")
FIELDS: Final[Mapping[Scope, str]] = {
    "daily": "budgets.daily_tokens",
    "heartbeat": "budgets.heartbeat_daily_tokens",
    "system": "budgets.system_daily_tokens",
}


def scopes_of(source: Source, thread_id: str) -> tuple[Scope, ...]:
    """The limits a call for `source` in `thread_id` counts against (rule 1)."""
    if source == "heartbeat":
        return ("daily", "heartbeat")
    if interface_for(thread_id) == "system":
        return ("daily", "system")
    return ("daily",)


def is_autonomous(source: Source, thread_id: str) -> bool:
    """Work no one asked for just now (rule 3): it stops for the day when refused."""
    return source in ("heartbeat", "reminders") or interface_for(thread_id) == "system"


@dataclass(frozen=True, slots=True)
class Overrun:
    """A call that would pass `limit` (of `scope`, whose config field is `field`):
    `spent` today (reservations of calls in flight included), `needed` by the call."""

    scope: Scope
    limit: int
    spent: int
    needed: int

    @property
    def field(self) -> str:
        return FIELDS[self.scope]

    @property
    def left(self) -> int:
        return max(0, self.limit - self.spent)


def limit_of(budgets: BudgetsConfig, scope: Scope, allowance: int = 0) -> int | None:
    match scope:
        case "daily":
            base = budgets.daily_tokens
            return None if base is None else base + allowance
        case "heartbeat":
            return budgets.heartbeat_daily_tokens
        case "system":
            return budgets.system_daily_tokens


def overrun(
    budgets: BudgetsConfig,
    scopes: tuple[Scope, ...],
    spent: Mapping[Scope, int],
    needed: int,
    allowance: int = 0,
) -> Overrun | None:
    """The first of `scopes` that a call needing `needed` tokens would pass (rule 2),
    or None when it fits all of them."""
    for scope in scopes:
        limit = limit_of(budgets, scope, allowance)
        if limit is not None and spent.get(scope, 0) + needed > limit:
            return Overrun(scope, limit, spent.get(scope, 0), needed)
    return None
