"""What the model calls cost: one call's `Spend`, and `Totals` of many (value types).

Every call to a model is counted under one source (`SOURCES`):

    owner           the owner's own turns
    reminders       the turns reminders start (thread-bound and system ones)
    heartbeat       heartbeat reviews (of a conversation, and the global one)
    compaction      summaries of older messages
    titles          a conversation's title
    transcription   voice messages heard

Tokens are the server's figures (`usage` of its answer). Where a server reports none,
the calibrated estimate is counted instead and the spend is marked `estimated`, so every
view can say which figures are the server's. `cost` is in `currency` when the endpoint
that answered has a price (`llm.price`), else None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

__all__ = ["SOURCES", "Source", "Spend", "Totals", "UsageView", "turn_source"]

Source = Literal["owner", "reminders", "heartbeat", "compaction", "titles", "transcription"]
SOURCES: Final[tuple[Source, ...]] = get_args(Source)

_TURN_SOURCES: Final[Mapping[str, Source]] = {"reminder": "reminders", "heartbeat": "heartbeat"}


def turn_source(source: str) -> Source:
    """The usage source of a turn by the turn's own source ("user", "reminder",
    "heartbeat")."""
    return _TURN_SOURCES.get(source, "owner")


@dataclass(frozen=True, slots=True)
class Spend:
    """One call: in `thread_id`, for `source`, answered by `model`."""

    thread_id: str
    source: Source
    model: str
    prompt: int
    completion: int
    cached: int = 0
    estimated: bool = False
    cost: float | None = None
    currency: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt + self.completion


@dataclass(frozen=True, slots=True)
class Totals:
    """Many calls added up. `estimated` counts the calls whose figures are estimates;
    `costs` is the money by currency (empty: no call had a price)."""

    calls: int = 0
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    estimated: int = 0
    costs: Mapping[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt + self.completion

    @classmethod
    def of(cls, spend: Spend) -> Totals:
        costs = (
            {spend.currency: spend.cost}
            if spend.cost is not None and spend.currency is not None
            else {}
        )
        return cls(1, spend.prompt, spend.completion, spend.cached, int(spend.estimated), costs)

    def __add__(self, other: Totals) -> Totals:
        costs = dict(self.costs)
        for currency, amount in other.costs.items():
            costs[currency] = costs.get(currency, 0.0) + amount
        return Totals(
            self.calls + other.calls,
            self.prompt + other.prompt,
            self.completion + other.completion,
            self.cached + other.cached,
            self.estimated + other.estimated,
            costs,
        )


@dataclass(frozen=True, slots=True)
class UsageView:
    """What one conversation has spent, for an interface to show (the web chat's header):
    in all and today, what every conversation spent today (`day`, the owner's date), and
    the model it talks to (`model`: the owner's choice by name, None for the main one;
    `model_id`: what that endpoint serves)."""

    day: str
    conversation: Totals
    conversation_today: Totals
    everyone_today: Totals
    model: str | None
    model_id: str
