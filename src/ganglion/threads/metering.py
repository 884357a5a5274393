"""What `/usage`, `/budget` and `/model` say and do in a conversation."""

from __future__ import annotations

import logging
import re

from ganglion.threads.conversation import Conversation
from ganglion.usage.text import usage_text

__all__ = ["budget_command", "model_command", "usage_command"]

log = logging.getLogger(__name__)

_MORE = re.compile(r"^\+\s*([0-9][0-9_,]*)\s*([kKmM]?)$")
# The most one `/budget +N` may add: a typo of a few zeros should not lift every limit.
MAX_ALLOWANCE = 100_000_000


async def usage_command(conversation: Conversation) -> str:
    """This conversation's usage (in all and today), today's by source, the budgets."""
    meter = conversation.deps.meter
    mine, mine_today = await meter.conversation(conversation.thread_id)
    today = await meter.today()
    return usage_text(mine, mine_today, today, meter.day, meter.budget_lines())


async def budget_command(conversation: Conversation, args: str) -> str:
    """`/budget`: what is left today; `/budget +N`: allow N more tokens today."""
    meter = conversation.deps.meter
    if not args:
        return "\n".join(meter.budget_lines())
    tokens = _tokens(args)
    if tokens is None:
        return "Say how many more tokens to allow today, e.g. /budget +50000 (or +50k, +2m)."
    if conversation.deps.config.budgets.daily_tokens is None:
        return "No daily budget is set (budgets.daily_tokens), so nothing needs raising."
    allowance = await meter.allow(tokens)
    log.info("budget: the owner allowed %d more tokens today (%d in all)", tokens, allowance)
    return "\n".join([f"Allowed {tokens:,} more tokens today.", *meter.budget_lines()])


def _tokens(args: str) -> int | None:
    match = _MORE.match(args.strip())
    if match is None:
        return None
    number = int(match.group(1).replace("_", "").replace(",", ""))
    number *= {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return number if 0 < number <= MAX_ALLOWANCE else None


async def model_command(conversation: Conversation, args: str) -> str:
    """`/model`: the models to choose from; `/model NAME`: ask NAME in this conversation
    from now on; `/model default`: the main model again."""
    config = conversation.deps.config.llm
    name = args.strip()
    if not name:
        return _models_text(conversation)
    if name.lower() == "default":
        await conversation.choose_model(None)
        return f"This conversation asks the main model again: {config.model}."
    if name not in config.models:
        known = ", ".join(config.models) or "none are configured (llm.models)"
        return f"There is no model {name!r}. Models to choose from: {known}."
    await conversation.choose_model(name)
    chosen = config.models[name]
    return f"This conversation asks {name} from now on: {chosen.model} at {chosen.base_url}."


def _models_text(conversation: Conversation) -> str:
    config = conversation.deps.config.llm
    current = conversation.model if conversation.model in config.models else None
    lines = [f"{'* ' if current is None else '  '}default: {config.model} at {config.base_url}"]
    lines += [
        f"{'* ' if name == current else '  '}{name}: {endpoint.model} at {endpoint.base_url}"
        + (", sees pictures" if endpoint.vision else "")
        for name, endpoint in config.models.items()
    ]
    if not config.models:
        lines.append("No other model is configured (llm.models in config.yaml).")
    else:
        lines.append("Switch with /model NAME; /model default goes back.")
    return "\n".join(lines)
