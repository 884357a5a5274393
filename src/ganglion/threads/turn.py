"""One turn: model -> tools -> model, for at most `llm.max_tool_rounds` rounds.

Every assistant message that calls tools and every tool result is appended to the history
(and the store) as it is produced, in the shape the chat-completions API expects, so a
turn cut off half-way resumes from what it had already done.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ganglion.errors import GanglionError
from ganglion.fitting import Budget, Fit
from ganglion.llm import LLMContextExceeded, extract_text_tool_calls
from ganglion.messages import FileSent, Notice, Outbound, TextDelta, ToolActivity
from ganglion.spend import turn_source
from ganglion.store import Turn
from ganglion.threads.approvals import call_key, open_calls
from ganglion.threads.conversation import Conversation, Images
from ganglion.threads.media import turn_images
from ganglion.threads.offers import MORE_TOOLS, Offer, tool_offers, unlock
from ganglion.tokens import estimate_message_tokens
from ganglion.tools import ToolContext
from ganglion.transcript import ChatMessage, ToolCall

__all__ = ["Emit", "TurnError", "run_model_loop"]

log = logging.getLogger(__name__)

# Where a turn's events go: the thread actor's `emit` (a review passes its own).
Emit = Callable[[Outbound], Awaitable[None]]

FINAL_ROUND_NOTE = (
    "You have used all the tool calls allowed for this message. Answer now with what you "
    "have, and say what is left undone."
)
IMAGES_REFUSED = (
    "The model server does not take pictures (it refused the image), so vision is off "
    "for it until the next start; this answer was made without seeing the picture. Set "
    "llm.vision: false, or serve a model that can see."
)
ACTIVITY_PREVIEW_CHARS = 2000
PERSIST_NOTICE_CHARS = 300
AUDIT_LOG_ARGUMENT_CHARS = 500


class TurnError(GanglionError):
    """A turn that cannot complete for a reason the user should hear about (the message)."""


async def run_model_loop(conversation: Conversation, turn: Turn, emit: Emit) -> str:
    """Run the model (and its tool calls) until it gives a final answer; return its text.

    What the turn produces (tool calls and their results) is appended to `conversation`;
    its events (streamed text, tool activity, notices) go to `emit`.

    Error handling: `LLMError` from the client propagates (the caller tells the user);
    an empty final answer raises `TurnError`.
    """
    tools = conversation.tools
    config = conversation.deps.config.llm
    schemas = tools.schemas()
    context = ToolContext(
        thread_id=conversation.thread_id,
        turn_id=turn.turn_id,
        interface=conversation.interface,
        source=turn.source,
    )

    async def stream(text: str) -> None:
        await emit(TextDelta(conversation.thread_id, turn.turn_id, text))

    source = turn_source(turn.source)
    rounds = 0
    refused = False  # the server refused one request of this turn for its size
    unlocked: frozenset[str] = frozenset()  # asked for with more_tools
    images = await turn_images(conversation, turn)
    await _resume_calls(conversation, emit, turn, context)
    while True:
        allow_tools = bool(schemas) and rounds < config.max_tool_rounds
        note = FINAL_ROUND_NOTE if schemas and not allow_tools else None
        budget = await conversation.budget(source)
        offered, fit = await _fit(
            conversation,
            budget,
            unlocked if allow_tools else None,
            note,
            rounds == 0 or refused,
            images,
        )
        if rounds == 0 and not refused:
            await _tell_about_cuts(conversation.thread_id, emit, fit, budget)
        try:
            completion = await conversation.complete(
                fit, tools=offered, on_text=stream, source=source
            )
        except LLMContextExceeded as exc:
            # The client learned the window the server stated; fit again, once.
            log.warning("request of %d tokens refused for its size: %s", fit.tokens, exc)
            if refused:
                raise TurnError(_still_too_large(exc, fit)) from exc
            refused = True
            continue
        if completion.images_refused and images:
            images = {}
            await emit(Notice(conversation.thread_id, IMAGES_REFUSED, turn.turn_id))
        calls = completion.tool_calls
        content: str | None = completion.content or None
        if not calls and offered:
            calls = extract_text_tool_calls(completion.content, tools.names | {MORE_TOOLS})
            if calls:
                content = None  # the text *was* the call; keep it out of the history
        if not calls:
            if not completion.content.strip():
                raise TurnError("The model returned an empty answer. Please try again.")
            return completion.content
        rounds += 1
        await conversation.append(turn, ChatMessage("assistant", content, tool_calls=tuple(calls)))
        asked_by = conversation.history[-1].id  # the stored message that makes these calls
        allowed = config.max_tool_calls_per_round
        for call in calls[:allowed]:
            if call.name == MORE_TOOLS:
                added, result = unlock(call, tools)
                unlocked |= added
                await conversation.append(
                    turn, ChatMessage("tool", result, tool_call_id=call.id, name=call.name)
                )
            else:
                await _run_tool(conversation, emit, turn, call, context, asked_by)
        for call in calls[allowed:]:
            # Every call needs its result for the history to stay valid.
            log.warning(
                "tool call in %s not run: over %d in one round", conversation.thread_id, allowed
            )
            refusal = f"error: not run: at most {allowed} tool calls per round; send the rest next"
            await conversation.append(
                turn, ChatMessage("tool", refusal, tool_call_id=call.id, name=call.name)
            )


async def _fit(
    conversation: Conversation,
    budget: Budget,
    unlocked: frozenset[str] | None,
    note: str | None,
    may_compact: bool,
    images: Images,
) -> tuple[list[dict[str, Any]] | None, Fit]:
    """The tools to offer (the best that fits, see `threads.offers`) and the fitted
    prompt. `unlocked`: the tools asked for with `more_tools` so far; None for no tools.

    Error handling: raises `TurnError` (with the numbers) when the system prompt alone
    leaves no room for the conversation.
    """
    offers = (
        tool_offers(conversation.tools, budget.window, unlocked)
        if unlocked is not None
        else [Offer(None, "no tools")]
    )
    fit: Fit | None = None
    for index, offer in enumerate(offers):
        if may_compact:
            fit = await conversation.fit_compacting(
                budget, offer.schemas, final_note=note, images=images
            )
        else:
            fit = await conversation.fit(budget, offer.schemas, final_note=note, images=images)
        may_compact = False  # compaction, if it helps at all, has helped by now
        if fit.fits:
            if index:
                log.info(
                    "%s: a context window of %d tokens leaves room for %s",
                    conversation.thread_id,
                    budget.window,
                    offer.name,
                )
            return offer.schemas, fit
    assert fit is not None
    raise TurnError(_does_not_fit(fit, budget))


def _does_not_fit(fit: Fit, budget: Budget) -> str:
    window = (
        f"of the {budget.window:,} tokens the model server accepts per request "
        f"({budget.reserve:,} are kept for the answer)"
    )
    instructions = budget.count(estimate_message_tokens(fit.messages[0]))
    if instructions + budget.reserve > budget.window:
        return (
            f"This conversation cannot fit the model's context window: the instructions "
            f"alone take about {instructions:,} {window}. Raise the server's context size "
            "(llama.cpp: --ctx-size per --parallel slot; Ollama: num_ctx), or shorten "
            "MEMORIES.txt and the skills index."
        )
    return (
        f"This answer needs more room than the model's context window has: its tool calls "
        f"and what cannot be cut take about {fit.fixed_tokens:,} {window}. Ask for less at "
        "once, raise the server's context size, or start afresh with /new."
    )


async def _tell_about_cuts(thread_id: str, emit: Emit, fit: Fit, budget: Budget) -> None:
    """Tell the owner when their new message had to be cut to fit the window."""
    last_user = max((i for i, m in enumerate(fit.messages) if m.role == "user"), default=-1)
    for clip in fit.clips:
        if clip.index == last_user:
            await emit(
                Notice(
                    thread_id,
                    f"Your message is about {budget.count(clip.original):,} tokens, more than "
                    f"the model's context window ({budget.window:,} tokens) can hold with "
                    f"the rest of the conversation. The model sees its beginning and end "
                    f"(about {budget.count(clip.kept):,} tokens); the middle is cut, and the "
                    "full text is kept in the conversation.",
                )
            )


def _still_too_large(exc: LLMContextExceeded, fit: Fit) -> str:
    size = exc.prompt_tokens or fit.tokens
    limit = exc.limit or exc.window
    stated = (
        f"accepts {limit:,} tokens per request and this one was {size:,}"
        if limit
        else (f"refused a request of about {size:,} tokens for its size")
    )
    return (
        f"This message does not fit the model's context window even after compacting: the "
        f"server {stated}. Raise the server's context size, lower llm.context_window, or "
        "start afresh with /new."
    )


async def _resume_calls(
    conversation: Conversation, emit: Emit, turn: Turn, context: ToolContext
) -> None:
    """Finish the calls of a turn cut off while they waited for the owner (a restart):
    each by what its question says (`threads.approvals`). A call that was never asked
    about is left to the repair (interrupted: it may have run)."""
    stored = [m for m in conversation.history if m.turn_id == turn.turn_id]
    last = max(
        (i for i, m in enumerate(stored) if m.message.role == "assistant" and m.message.tool_calls),
        default=None,
    )
    if last is None:
        return
    asked_by = stored[last].id
    approver = conversation.deps.approver
    later = [m.message for m in stored[last + 1 :]]
    for call in open_calls(later, stored[last].message):
        if await approver.asked(turn.turn_id, call_key(asked_by, call)):
            log.info("%s: resuming tool call %s (%s)", conversation.thread_id, call.id, call.name)
            await _run_tool(conversation, emit, turn, call, context, asked_by)


async def _run_tool(
    conversation: Conversation,
    emit: Emit,
    turn: Turn,
    call: ToolCall,
    context: ToolContext,
    asked_by: int,
) -> None:
    """Run `call`, made by the stored message `asked_by` of `turn`, if the owner's policy
    or the owner allows it (`threads.approvals`); store its result and show it."""
    await emit(
        ToolActivity(
            conversation.thread_id, turn.turn_id, call.id, call.name, "start", call.arguments
        )
    )
    approver = conversation.deps.approver
    permit = await approver.permit(conversation.thread_id, turn, call, call_key(asked_by, call))
    if not permit.run:
        assert permit.result is not None
        await _not_run(conversation, emit, turn, call, permit.result)
        return
    redactor = conversation.deps.redactor
    result = await conversation.tools.call(call, context)
    content = redactor.known(result.content)  # the daemon's secrets never reach the model
    arguments = redactor.arguments(call.arguments)
    log.info(
        "tool call in %s: %s(%s) %s in %.0f ms",
        conversation.thread_id,
        call.name,
        _shorten(arguments, AUDIT_LOG_ARGUMENT_CHARS),
        "ok" if result.ok else f"failed: {_shorten(redactor.text(content), 200)}",
        result.duration * 1000,
    )
    sent = result.sent
    # A file the tool sends is queued in the outbox with its message, in one transaction.
    outbox_id = await conversation.append(
        turn,
        ChatMessage(
            "tool",
            content,
            tool_call_id=call.id,
            name=call.name,
            attachments=(sent,) if sent is not None else (),
        ),
        meta=result.audit(arguments),
        outbox=("file", {"attachment": sent.to_json()}) if sent is not None else None,
    )
    await emit(
        ToolActivity(
            conversation.thread_id,
            turn.turn_id,
            call.id,
            call.name,
            "end",
            call.arguments,
            content[:ACTIVITY_PREVIEW_CHARS],
            result.ok,
        )
    )
    if sent is not None and outbox_id is not None:
        await emit(FileSent(conversation.thread_id, turn.turn_id, sent, outbox_id))
    if result.persists:
        # What outlives this conversation is never changed behind the owner's back.
        await emit(
            Notice(
                conversation.thread_id,
                f"Kept: {_shorten(content, PERSIST_NOTICE_CHARS)}",
                turn.turn_id,
            )
        )


async def _not_run(
    conversation: Conversation, emit: Emit, turn: Turn, call: ToolCall, result: str
) -> None:
    """Store and show the result of a call that did not run (denied, or ran and lost)."""
    await conversation.append(
        turn, ChatMessage("tool", result, tool_call_id=call.id, name=call.name)
    )
    await emit(
        ToolActivity(
            conversation.thread_id,
            turn.turn_id,
            call.id,
            call.name,
            "end",
            call.arguments,
            result[:ACTIVITY_PREVIEW_CHARS],
            False,
        )
    )


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
