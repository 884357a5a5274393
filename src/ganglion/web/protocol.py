"""The server's side of the web chat's protocol (its frames: `ganglion.web.frames`).

Client frames are parsed here and validated against their one definition, `frames`'
`TypedDict`s and the limits written on them, by pydantic (`TypeAdapter`); unknown fields
are refused. A refused frame is a `FrameError` with a code for the `error` frame.
Outbound events and history pages become the server's frames, built as `frames`'
`TypedDict`s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, assert_never

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from ganglion.backend import Submitted
from ganglion.beats import HEARTBEAT_OK
from ganglion.errors import GanglionError
from ganglion.messages import (
    ApprovalAsked,
    ApprovalSettled,
    FileSent,
    FinalReply,
    Notice,
    Outbound,
    TextDelta,
    ThreadRetitled,
    ToolActivity,
    TurnFailed,
    TurnStarted,
)
from ganglion.spend import Totals, UsageView
from ganglion.store import RewindReason, SearchHit, StoredMessage, ThreadSummary, Turn
from ganglion.web import frames
from ganglion.web.uploads import attachment_item
from ganglion.web.wording import owner_notice, tool_card

__all__ = [
    "REWIND_ERROR_CODES",
    "ClientFrame",
    "FrameError",
    "accepted_frame",
    "error_frame",
    "event_frame",
    "history_frame",
    "new_conversation_frame",
    "parse_client_frame",
    "search_frame",
    "send_id",
    "thread_changed_frame",
    "threads_frame",
    "turn_label",
    "usage_frame",
    "versions_frame",
    "welcome_frame",
]

ClientFrame = frames.ClientFrame

# A frame with a field the protocol does not define is refused, as a typo would be.
for _frame in frames.CLIENT_FRAMES:
    _frame.__pydantic_config__ = ConfigDict(extra="forbid")
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(
    Annotated[ClientFrame, Field(discriminator="type")]
)


# The store's reasons for refusing a rewind, as the codes of the `error` frame.
REWIND_ERROR_CODES: Mapping[RewindReason, str] = {
    RewindReason.NOTHING: "nothing_to_rewind",
    RewindReason.NOT_LAST: "not_last",
    RewindReason.COMPACTED: "compacted",
    RewindReason.BUSY: "busy",
}


class FrameError(GanglionError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Parse and validate one client frame. Raises `FrameError` with a clear message."""
    if not raw:
        raise FrameError("bad_frame", "empty frame; send a JSON object with a 'type'")
    if isinstance(raw, bytes):
        raise FrameError("bad_frame", "binary frames are not part of the protocol; send JSON text")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FrameError("bad_json", f"the frame is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise FrameError("bad_json", "the frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "a frame must be a JSON object with a 'type'")
    if data.get("v", frames.PROTOCOL_VERSION) != frames.PROTOCOL_VERSION:
        raise FrameError(
            "bad_version",
            f"unsupported protocol version; this server speaks v{frames.PROTOCOL_VERSION}",
        )
    if data.get("type") not in frames.CLIENT_FRAME_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {str(data.get('type'))[:40]!r}")
    try:
        frame = _client_frame.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        raise FrameError("bad_frame", f"{where}: {first['msg']}") from None
    if frame["type"] == frames.SEND and not frame["text"] and not frame.get("attachments"):
        raise FrameError("bad_frame", "text: a message needs text or an attachment")
    return frame


def send_id(raw: str | bytes) -> str | None:
    """The `id` of a refused frame when it is a send or a rewind (so its error can name
    it), else None. Reads frames of any size: only call it on frames the session refuses."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("type") not in (frames.SEND, frames.REWIND):
        return None
    message_id = data.get("id")
    if isinstance(message_id, str) and 0 < len(message_id) <= 100:
        return message_id
    return None


def welcome_frame(
    thread_id: str, max_message_bytes: int, summary: ThreadSummary | None = None
) -> str:
    """The answer to a hello; `summary` is the conversation as the list shows it (None:
    it is new)."""
    listed = summary is not None and summary.updated_at is not None
    return frames.encode(
        frames.WelcomeFrame(
            type=frames.WELCOME,
            thread_id=thread_id,
            protocol=frames.PROTOCOL_VERSION,
            max_message_bytes=max_message_bytes,
            title=summary.title if listed and summary is not None else None,
            archived=summary is not None and summary.archived,
        )
    )


def error_frame(code: str, message: str, message_id: str | None = None) -> str:
    return frames.encode(
        frames.ErrorFrame(type=frames.ERROR, code=code, message=message, id=message_id)
    )


def accepted_frame(message_id: str, submitted: Submitted) -> str:
    return frames.encode(
        frames.AcceptedFrame(
            type=frames.ACCEPTED,
            id=message_id,
            turn_id=submitted.turn_id,
            state=submitted.state,
            duplicate=submitted.duplicate,
        )
    )


def turn_label(source: str, content: str | None) -> str | None:
    """What a reminder or heartbeat turn's input says, without the instructions the
    thread wrapped it in (a bracketed first line): the label its chip shows."""
    if source == "heartbeat":
        return "Heartbeat review"
    if source != "reminder" or not content:
        return None
    first, _, rest = content.partition("\n")
    if first.startswith("[") and first.endswith("]"):
        return rest.strip() or None
    return content.strip()


def event_frame(event: Outbound) -> str:
    """The frame of an outbound event."""
    frame: frames.ServerFrame
    match event:
        case TurnStarted(turn_id=turn_id, source=source, input=text):
            frame = frames.TurnStartedFrame(
                type=frames.TURN_STARTED,
                turn_id=turn_id,
                source=source,
                label=turn_label(source, text),
            )
        case TextDelta(turn_id=turn_id, text=text):
            frame = frames.DeltaFrame(type=frames.DELTA, turn_id=turn_id, text=text)
        case ToolActivity():
            frame = frames.ToolFrame(
                type=frames.TOOL,
                turn_id=event.turn_id,
                call_id=event.call_id,
                tool=event.tool,
                phase=event.phase,
                arguments=event.arguments,
                result=event.result,
                ok=event.ok,
                card=None,
            )
            if event.phase == "end":
                frame["card"] = tool_card(
                    event.tool, event.arguments, event.result, event.ok, datetime.now(UTC)
                )
        case FinalReply(turn_id=turn_id, text=text, outbox_id=outbox_id):
            frame = frames.ReplyFrame(
                type=frames.REPLY,
                turn_id=turn_id,
                text=text,
                outbox_id=outbox_id,
            )
        case FileSent(thread_id=thread_id, turn_id=turn_id, attachment=sent, outbox_id=outbox_id):
            frame = frames.FileFrame(
                type=frames.FILE,
                turn_id=turn_id,
                attachment=attachment_item(thread_id, sent),
                outbox_id=outbox_id,
            )
        case TurnFailed(turn_id=turn_id, message=message):
            frame = frames.FailedFrame(type=frames.FAILED, turn_id=turn_id, message=message)
        case Notice(text=text, turn_id=turn_id):
            text = owner_notice(text, datetime.now(UTC))
            frame = frames.NoticeFrame(type=frames.NOTICE, text=text, turn_id=turn_id)
        case ApprovalAsked():
            frame = frames.ApprovalFrame(
                type=frames.APPROVAL,
                approval_id=event.approval_id,
                turn_id=event.turn_id,
                tool=event.tool,
                call=event.call,
                why=event.why,
                from_thread=event.from_thread,
                expires_at=event.expires_at,
                always=event.always,
            )
        case ApprovalSettled(approval_id=approval_id, outcome=outcome, by=by):
            frame = frames.ApprovalSettledFrame(
                type=frames.APPROVAL_SETTLED, approval_id=approval_id, outcome=outcome, by=by
            )
        case ThreadRetitled(thread_id=thread_id):
            return thread_changed_frame(thread_id, "renamed")  # the list reads the title
        case _:
            assert_never(event)
    return frames.encode(frame)


def history_frame(
    messages: Sequence[StoredMessage],
    *,
    more: bool,
    before_id: int | None = None,
    queued: Sequence[Turn] = (),
) -> str:
    """A page of the transcript, with the `queued` turns' inputs at its end. Heartbeat
    reviews that found nothing to tell are left out (their input and their answer).
    Builds and encodes a whole page (tool cards, notices): call it in a worker thread."""
    quiet = {
        m.turn_id
        for m in messages
        if m.message.role == "assistant" and (m.message.content or "").strip() == HEARTBEAT_OK
    }
    items: list[frames.HistoryItem] = []
    now = datetime.now(UTC)
    arguments: dict[str, str] = {}  # a call's arguments, by its id, for its result's card
    for stored in messages:
        if stored.turn_id is not None and stored.turn_id in quiet:
            continue
        message = stored.message
        item = frames.HistoryItem(
            id=stored.id, role=message.role, content=message.content, turn_id=stored.turn_id
        )
        if stored.kind is not None:
            item["kind"] = stored.kind
        if stored.source is not None:
            item["source"] = stored.source
            item["label"] = turn_label(stored.source, message.content)
            if stored.source != "user":
                item["content"] = None  # the instructions are the model's, not the owner's
        if stored.kind == "notice" and message.content:
            item["content"] = owner_notice(message.content, now)
        if message.tool_calls:
            item["tool_calls"] = [
                frames.HistoryToolCall(id=c.id, name=c.name, arguments=c.arguments)
                for c in message.tool_calls
            ]
            arguments.update((c.id, c.arguments) for c in message.tool_calls)
        if message.role == "tool":
            item["tool_call_id"] = message.tool_call_id
            item["name"] = message.name
            content = message.content or ""
            meta = stored.meta or {}
            ok = bool(meta.get("ok", not content.startswith("error:")))
            called = arguments.get(message.tool_call_id or "", "")
            item["card"] = tool_card(message.name or "tool", called, content, ok, now)
        if message.attachments:
            item["attachments"] = [
                attachment_item(stored.thread_id, a) for a in message.attachments
            ]
        items.append(item)
    for turn in queued:
        if turn.source == "heartbeat":
            continue
        label = turn_label(turn.source, turn.input.content)
        waiting = frames.HistoryItem(
            id=0,
            role="user",
            content=turn.input.content if turn.source == "user" else None,
            turn_id=turn.turn_id,
            source=turn.source,
            label=label,
            queued=True,
        )
        if turn.input.attachments:
            waiting["attachments"] = [
                attachment_item(turn.thread_id, a) for a in turn.input.attachments
            ]
        items.append(waiting)
    return frames.encode(
        frames.HistoryFrame(type=frames.HISTORY, messages=items, more=more, before_id=before_id)
    )


def threads_frame(items: Sequence[ThreadSummary], *, archived: bool) -> str:
    return frames.encode(
        frames.ThreadsFrame(
            type=frames.THREADS,
            items=[
                frames.ThreadItem(
                    thread_id=t.thread_id,
                    title=t.title,
                    updated_at=t.updated_at,
                    archived=t.archived,
                )
                for t in items
            ],
            archived=archived,
        )
    )


def thread_changed_frame(thread_id: str, change: frames.ThreadChange) -> str:
    return frames.encode(
        frames.ThreadChangedFrame(type=frames.THREAD_CHANGED, thread_id=thread_id, change=change)
    )


def versions_frame(turn_id: str, turns: Sequence[str]) -> str:
    return frames.encode(
        frames.VersionsFrame(type=frames.VERSIONS, turn_id=turn_id, turns=list(turns))
    )


def new_conversation_frame(thread_id: str, previous: str, text: str) -> str:
    return frames.encode(
        frames.NewConversationFrame(
            type=frames.NEW_CONVERSATION, thread_id=thread_id, previous=previous, text=text
        )
    )


def search_frame(query: str, hits: Sequence[SearchHit]) -> str:
    return frames.encode(
        frames.SearchResultsFrame(
            type=frames.SEARCH_RESULTS,
            query=query,
            hits=[
                frames.SearchHitItem(
                    thread_id=h.thread_id, title=h.title, message_id=h.message_id, snippet=h.snippet
                )
                for h in hits
            ],
        )
    )


def usage_frame(thread_id: str, view: UsageView) -> str:
    """What a conversation spent and the model it talks to (the header's usage view)."""

    def totals(t: Totals) -> frames.UsageTotals:
        return frames.UsageTotals(
            tokens_in=t.prompt,
            tokens_out=t.completion,
            calls=t.calls,
            estimated=t.estimated,
            cost={currency: round(amount, 6) for currency, amount in t.costs.items()},
        )

    return frames.encode(
        frames.UsageFrame(
            type=frames.USAGE,
            thread_id=thread_id,
            day=view.day,
            model=view.model,
            model_id=view.model_id,
            conversation=totals(view.conversation),
            conversation_today=totals(view.conversation_today),
            everyone_today=totals(view.everyone_today),
        )
    )
