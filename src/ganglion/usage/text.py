"""What the owner reads about usage: `/usage`, `/budget`, a refused call (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from ganglion.spend import SOURCES, Source, Totals
from ganglion.usage.budgets import FIELDS, Overrun

__all__ = [
    "budget_text",
    "money",
    "owner_refused_text",
    "stopped_for_today_text",
    "tokens_text",
    "usage_text",
]

_WHAT_STOPS = {
    "heartbeat": "Heartbeat reviews",
    "system": "System reminders and other work in the system conversations",
    "daily": "Autonomous work (heartbeat reviews and reminders)",
}


def money(costs: Mapping[str, float]) -> str:
    """ "0.0123 USD" (several currencies joined); "" when nothing had a price."""
    return " + ".join(f"{amount:.4f} {currency}" for currency, amount in sorted(costs.items()))


def tokens_text(totals: Totals) -> str:
    """ "12,345 tokens (10,000 in, 2,345 out)", with the money and "~" for estimates."""
    mark = "~" if totals.estimated else ""
    text = (
        f"{mark}{totals.tokens:,} tokens ({totals.prompt:,} in, {totals.completion:,} out"
        + (f", {totals.cached:,} cached" if totals.cached else "")
        + f"; {totals.calls:,} call{'s' if totals.calls != 1 else ''})"
    )
    cost = money(totals.costs)
    return f"{text}, {mark}{cost}" if cost else text


def _by_source(totals: Mapping[Source, Totals]) -> list[str]:
    return [f"  {source}: {tokens_text(totals[source])}" for source in SOURCES if source in totals]


def _sum(totals: Mapping[Source, Totals]) -> Totals:
    return sum(totals.values(), Totals())


def usage_text(
    conversation: Mapping[Source, Totals],
    conversation_today: Mapping[Source, Totals],
    today: Mapping[Source, Totals],
    day: str,
    budget_lines: list[str],
) -> str:
    """`/usage`: this conversation's totals (in all and today) and today's, by source."""
    lines = [f"This conversation: {tokens_text(_sum(conversation))}"]
    if conversation_today:
        lines.append(f"  today: {tokens_text(_sum(conversation_today))}")
    lines.append(f"Today ({day}), every conversation: {tokens_text(_sum(today))}")
    lines += _by_source(today)
    lines += budget_lines
    if any(t.estimated for t in [*conversation.values(), *today.values()]):
        lines.append("~ includes estimates: the model server reported no usage for some calls.")
    return "\n".join(lines)


def budget_text(limits: Mapping[str, tuple[int, int | None]], allowance: int) -> list[str]:
    """The budget lines: for each configured limit (field -> (spent, limit)), what is
    left; none configured: one line saying so."""
    if not any(limit is not None for _, limit in limits.values()):
        return ["No budget is set (budgets.daily_tokens and friends in config.yaml)."]
    lines = []
    for field, (spent, limit) in limits.items():
        if limit is None:
            continue
        daily = field == FIELDS["daily"] and allowance
        extra = f" (with {allowance:,} allowed today by /budget)" if daily else ""
        lines.append(
            f"Budget {field}: {spent:,} of {limit:,} tokens used today, "
            f"{max(0, limit - spent):,} left{extra}."
        )
    return lines


def owner_refused_text(over: Overrun) -> str:
    """Why an owner's message was not sent to the model, and how to go on."""
    more = max(over.needed, over.spent + over.needed - over.limit)
    return (
        f"Not sent to the model: today's token budget is used up. {over.spent:,} of "
        f"{over.limit:,} tokens ({over.field}) are spent or in use, and this request needs "
        f"about {over.needed:,}. Send /budget +{_round_up(more):,} to allow more today, "
        f"or raise {over.field} in config.yaml."
    )


def stopped_for_today_text(over: Overrun) -> str:
    """The one notice of the day when autonomous work stops at its budget."""
    return (
        f"{_WHAT_STOPS[over.scope]} stopped for today: {over.spent:,} of {over.limit:,} "
        f"tokens ({over.field}) are used. They go on tomorrow; raise {over.field} in "
        "config.yaml to go on sooner" + (", or send /budget +N." if over.scope == "daily" else ".")
    )


def _round_up(tokens: int) -> int:
    """A number easy to type: up to the next thousand."""
    return max(1000, -(-tokens // 1000) * 1000)
