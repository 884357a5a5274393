"""What the model calls cost, kept: one row per call (`spend.Spend`), by the owner's
calendar day.

`usage`
    One row per model call: when (`at`, and `day` in the owner's timezone), the
    conversation, the source, the model that answered, prompt / completion / cached
    tokens, whether they are estimates, and the cost where the endpoint has a price.
    Rows outlive their conversation: the tokens were spent.
`allowances`
    Tokens the owner allowed beyond the daily budget, for one day (`/budget +N`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ganglion.spend import SOURCES, Source, Spend, Totals
from ganglion.store.db import ConversationDB

__all__ = ["DayUsage", "UsageBook"]

# (source, whether it ran in a system conversation) -> what it spent that day.
DayUsage = Mapping[tuple[Source, bool], Totals]


class UsageBook:
    """The usage rows, for the meter (`ganglion.usage`)."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def record(self, day: str, spend: Spend) -> None:
        """Keep `spend`, counted on `day` (YYYY-MM-DD, the owner's)."""

        def write() -> None:
            self._store.execute(
                "INSERT INTO usage (at, day, thread_id, source, model, prompt, completion, "
                "cached, estimated, cost, currency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    day,
                    spend.thread_id,
                    spend.source,
                    spend.model,
                    spend.prompt,
                    spend.completion,
                    spend.cached,
                    int(spend.estimated),
                    spend.cost,
                    spend.currency,
                ),
            )

        await self._store.write(write)

    async def day(self, day: str) -> DayUsage:
        """What `day` spent, by source and by whether it ran in a system conversation."""
        return await self._store.read(lambda: self._sum("day = ?", [day]))

    async def thread(self, thread_id: str, day: str | None = None) -> Mapping[Source, Totals]:
        """What `thread_id` spent, by source: in all, or on `day` alone."""
        where, params = "thread_id = ?", [thread_id]
        if day is not None:
            where, params = "thread_id = ? AND day = ?", [thread_id, day]
        summed = await self._store.read(lambda: self._sum(where, params))
        found: dict[Source, Totals] = {}
        for (source, _), totals in summed.items():
            found[source] = found.get(source, Totals()) + totals
        return found

    def _sum(self, where: str, params: Sequence[str]) -> dict[tuple[Source, bool], Totals]:
        rows = self._store.rows(
            "SELECT source, thread_id LIKE 'system:%' AS system, currency, COUNT(*) AS calls, "
            "SUM(prompt) AS prompt, SUM(completion) AS completion, SUM(cached) AS cached, "
            f"SUM(estimated) AS estimated, SUM(cost) AS cost FROM usage WHERE {where} "
            "GROUP BY source, system, currency",
            params,
        )
        found: dict[tuple[Source, bool], Totals] = {}
        for row in rows:
            key = (_source(row["source"]), bool(row["system"]))
            found[key] = found.get(key, Totals()) + _totals(row)
        return found

    async def allowance(self, day: str) -> int:
        """The tokens allowed beyond the daily budget on `day`."""
        rows = await self._store.read(
            lambda: self._store.rows("SELECT tokens FROM allowances WHERE day = ?", (day,))
        )
        return int(rows[0]["tokens"]) if rows else 0

    async def allow(self, day: str, tokens: int) -> int:
        """Allow `tokens` more on `day`; the day's allowance now."""

        def write() -> int:
            self._store.execute(
                "INSERT INTO allowances (day, tokens) VALUES (?, ?) "
                "ON CONFLICT(day) DO UPDATE SET tokens = tokens + excluded.tokens",
                (day, tokens),
            )
            rows = self._store.rows("SELECT tokens FROM allowances WHERE day = ?", (day,))
            return int(rows[0]["tokens"])

        return await self._store.write(write)


def _source(value: str) -> Source:
    # A row written by a newer version with a source this one does not know counts as
    # the owner's: totals never lose it.
    return next((s for s in SOURCES if s == value), "owner")


def _totals(row: Mapping[str, object]) -> Totals:
    def count(key: str) -> int:
        value = row.get(key)
        return int(value) if isinstance(value, int | float) else 0

    cost, currency = row.get("cost"), row.get("currency")
    costs = (
        {currency: float(cost)}
        if isinstance(cost, int | float) and isinstance(currency, str)
        else {}
    )
    return Totals(
        count("calls"),
        count("prompt"),
        count("completion"),
        count("cached"),
        count("estimated"),
        costs,
    )
