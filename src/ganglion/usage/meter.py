"""The meter: every model call is checked against the budgets before it is made and
counted after it (`ganglion.usage.budgets` has the rules).

    async with meter.charge("owner", thread_id, needed) as charge:
        completion = await client.complete(...)
        await charge.record(completion, prompt_estimate)

The day is the owner's calendar day (`now()` is in their timezone); what it spent is
loaded from the store when the meter opens and kept in memory after, so a check costs no
database read. A call in flight reserves what it may need until it is counted: calls
made at once cannot together pass a budget.

When autonomous work is refused, it stops for the day: the meter logs one line and tells
the owner once per limit and day (`announce`, wired by the runtime to the conversation
the heartbeat speaks in).

Error handling: `charge` raises `BudgetExceeded`; store errors propagate.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime

from ganglion.config import BudgetsConfig
from ganglion.errors import GanglionError
from ganglion.llm import Completion
from ganglion.spend import Source, Spend, Totals
from ganglion.store import DayUsage, UsageBook
from ganglion.tokens import estimate_tokens
from ganglion.usage.budgets import (
    FIELDS,
    SCOPES,
    Overrun,
    Scope,
    is_autonomous,
    limit_of,
    overrun,
    scopes_of,
)
from ganglion.usage.text import budget_text, owner_refused_text, stopped_for_today_text

__all__ = ["BudgetExceeded", "Charge", "Meter", "spend_of"]

log = logging.getLogger(__name__)

Announce = Callable[[str], Awaitable[None]]


class BudgetExceeded(GanglionError):
    """A model call not made: it would pass a budget. `autonomous`: work no one asked
    for just now, stopped for the day (the owner is told once, by the meter); else an
    owner's turn, and the message says the numbers and how to go on."""

    def __init__(self, over: Overrun, *, autonomous: bool) -> None:
        self.over = over
        self.autonomous = autonomous
        text = stopped_for_today_text(over) if autonomous else owner_refused_text(over)
        super().__init__(text)


def spend_of(completion: Completion, thread_id: str, source: Source, prompt_estimate: int) -> Spend:
    """The spend of one answer: the server's figures, or (when it reported none) the
    calibrated estimate of the request and an estimate of the answer, marked so."""
    usage = completion.usage
    if usage.reported:
        prompt, answer, estimated = usage.prompt_tokens, usage.completion_tokens, False
    else:
        written = completion.content + "".join(c.arguments for c in completion.tool_calls)
        prompt, answer, estimated = prompt_estimate, estimate_tokens(written), True
    price = completion.price
    cost = (
        (prompt * price.input_per_million + answer * price.output_per_million) / 1_000_000
        if price is not None
        else None
    )
    return Spend(
        thread_id,
        source,
        completion.model,
        prompt,
        answer,
        usage.cached_tokens,
        estimated,
        cost,
        price.currency if price is not None else None,
    )


class Charge:
    """One call in flight: what it reserved, until `record` counts what it spent."""

    def __init__(self, meter: Meter, source: Source, thread_id: str) -> None:
        self._meter = meter
        self.source = source
        self.thread_id = thread_id

    async def record(self, completion: Completion, prompt_estimate: int) -> Spend:
        spend = spend_of(completion, self.thread_id, self.source, prompt_estimate)
        await self._meter.record(spend)
        return spend


class Meter:
    """Usage for today, the budgets, and the owner's allowance beyond them."""

    def __init__(
        self, book: UsageBook, budgets: BudgetsConfig, now: Callable[[], datetime]
    ) -> None:
        self._book = book
        self._budgets = budgets
        self._now = now
        self.announce: Announce | None = None  # set once by the runtime
        self._day = ""
        self._today: dict[tuple[Source, bool], Totals] = {}
        self._allowance = 0
        self._reserved: Counter[Scope] = Counter()
        self._stopped: set[Scope] = set()

    @property
    def day(self) -> str:
        return self._day or self._now().date().isoformat()

    async def _roll(self) -> None:
        """Load the day's figures when the day is not the one in memory."""
        day = self._now().date().isoformat()
        if day == self._day:
            return
        today: DayUsage = await self._book.day(day)
        allowance = await self._book.allowance(day)
        if day != self._now().date().isoformat():  # midnight passed while reading
            return await self._roll()
        self._day, self._today, self._allowance = day, dict(today), allowance
        self._stopped.clear()

    def _spent(self, scope: Scope) -> int:
        match scope:
            case "daily":
                keys = list(self._today)
            case "heartbeat":
                keys = [k for k in self._today if k[0] == "heartbeat"]
            case "system":
                keys = [k for k in self._today if k[1] and k[0] != "heartbeat"]
        return sum(self._today[k].tokens for k in keys)

    @asynccontextmanager
    async def charge(self, source: Source, thread_id: str, needed: int) -> AsyncIterator[Charge]:
        """Check a call that may need `needed` tokens (its request's estimate and its
        answer cap) and reserve them while it runs.

        Error handling: raises `BudgetExceeded` when the call would pass a budget."""
        await self._roll()
        scopes = scopes_of(source, thread_id)
        spent = {scope: self._spent(scope) + self._reserved[scope] for scope in scopes}
        over = overrun(self._budgets, scopes, spent, needed, self._allowance)
        if over is not None:
            autonomous = is_autonomous(source, thread_id)
            if autonomous:
                await self._stop_for_today(over)
            raise BudgetExceeded(over, autonomous=autonomous)
        self._reserved.update(dict.fromkeys(scopes, needed))
        try:
            yield Charge(self, source, thread_id)
        finally:
            self._reserved.subtract(dict.fromkeys(scopes, needed))

    async def _stop_for_today(self, over: Overrun) -> None:
        if over.scope in self._stopped:
            return
        self._stopped.add(over.scope)
        text = stopped_for_today_text(over)
        log.warning("budget: %s", text)
        if self.announce is not None:
            await self.announce(text)

    async def record(self, spend: Spend) -> None:
        """Count `spend` (stored first, then in memory)."""
        await self._roll()
        await self._book.record(self._day, spend)
        key = (spend.source, spend.thread_id.startswith("system:"))
        self._today[key] = self._today.get(key, Totals()) + Totals.of(spend)

    def stopped(self, scope: Scope) -> bool:
        """Whether `scope`'s autonomous work stopped for today (at its budget)."""
        return self._fresh() and scope in self._stopped

    def paused(self, source: Source, thread_id: str) -> bool:
        """Whether work for `source` in `thread_id` stopped for today at one of its
        budgets (the heartbeat asks before each beat)."""
        return any(self.stopped(scope) for scope in scopes_of(source, thread_id))

    async def allow(self, tokens: int) -> int:
        """Allow `tokens` more than `budgets.daily_tokens` today (`/budget +N`); the
        day's allowance now. Autonomous work stopped at the daily limit goes on."""
        await self._roll()
        self._allowance = await self._book.allow(self._day, tokens)
        self._stopped.discard("daily")
        return self._allowance

    async def today(self) -> Mapping[Source, Totals]:
        """Today's totals by source, every conversation."""
        await self._roll()
        return self.today_nowait()

    def _fresh(self) -> bool:
        """Whether the figures in memory are today's (a new day starts at none)."""
        return self._day == self._now().date().isoformat()

    def today_nowait(self) -> Mapping[Source, Totals]:
        """`today` as known in memory (status and metrics, which must not wait)."""
        found: dict[Source, Totals] = {}
        for (source, _), totals in (self._today if self._fresh() else {}).items():
            found[source] = found.get(source, Totals()) + totals
        return found

    async def conversation(
        self, thread_id: str
    ) -> tuple[Mapping[Source, Totals], Mapping[Source, Totals]]:
        """`thread_id`'s totals by source: in all, and today."""
        await self._roll()
        return await self._book.thread(thread_id), await self._book.thread(thread_id, self._day)

    def budgets(self) -> dict[str, tuple[int, int | None, bool]]:
        """Each budget by its config field: spent today, its limit (None: not set; the
        daily one with today's allowance) and whether its autonomous work stopped."""
        fresh = self._fresh()
        return {
            FIELDS[scope]: (
                self._spent(scope) if fresh else 0,
                limit_of(self._budgets, scope, self._allowance if fresh else 0),
                self.stopped(scope),
            )
            for scope in SCOPES
        }

    def budget_lines(self) -> list[str]:
        """What each configured budget has left today (`/usage`, `/budget`)."""
        limits = {field: (spent, limit) for field, (spent, limit, _) in self.budgets().items()}
        return budget_text(limits, self._allowance if self._fresh() else 0)
