"""The web chat's websocket protocol, version 1: small JSON frames with a "type".

Client -> server:

    {"v": 1, "type": "hello", "thread_id": "web_<hex>", "last_seen": 12 | null}
        first frame; binds the socket to the tab's thread (kept in sessionStorage).
    {"v": 1, "type": "send", "id": "<client message id>", "text": "..."}
        a message or a /command. `id` makes a resend after a reconnect idempotent.
    {"v": 1, "type": "history", "before_id": 123}
        an older page of the transcript.

Server -> client:

    welcome {thread_id, protocol}          after a valid hello
    history {messages: [...], more}        the transcript (current conversation)
    turn_started {turn_id}                 the assistant is working
    delta {turn_id, text}                  streamed tokens
    tool {turn_id, call_id, tool, phase, arguments, result, ok}
    reply {turn_id, text, outbox_id}       the final answer
    failed {turn_id, message}              the turn failed; message is safe to show
    notice {text}                          command output, reminders, system notes
    error {code, message}                  a frame was refused; the session goes on
                                           (`not_stored`: a send could not be made
                                           durable and will not be answered)

Errors never end the session except for `unauthorised` handshakes and repeated floods,
which close the socket with a reason.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ganglion.errors import GanglionError
from ganglion.messages import (
    FinalReply,
    Notice,
    Outbound,
    TextDelta,
    ToolActivity,
    TurnFailed,
    TurnStarted,
)
from ganglion.store import StoredMessage
from ganglion.threads.ids import WEB_THREAD_PATTERN

__all__ = [
    "PROTOCOL_VERSION",
    "ClientFrame",
    "FrameError",
    "Hello",
    "HistoryRequest",
    "Send",
    "error_frame",
    "event_frame",
    "history_frame",
    "parse_client_frame",
]

PROTOCOL_VERSION = 1


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1


class Hello(_Frame):
    type: Literal["hello"]
    thread_id: str = Field(pattern=WEB_THREAD_PATTERN)
    last_seen: int | None = None


class Send(_Frame):
    type: Literal["send"]
    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    text: str = Field(min_length=1)


class HistoryRequest(_Frame):
    type: Literal["history"]
    before_id: int = Field(ge=1)


ClientFrame = Annotated[Hello | Send | HistoryRequest, Field(discriminator="type")]
_client_frame: TypeAdapter[Hello | Send | HistoryRequest] = TypeAdapter(ClientFrame)


class FrameError(GanglionError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_frame(raw: str | bytes) -> Hello | Send | HistoryRequest:
    """Parse and validate one client frame. Raises `FrameError` with a clear message."""
    if not raw:
        raise FrameError("bad_frame", "empty frame; send a JSON object with a 'type'")
    if isinstance(raw, bytes):
        raise FrameError("bad_frame", "binary frames are not part of the protocol; send JSON text")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FrameError("bad_json", f"the frame is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "a frame must be a JSON object with a 'type'")
    if data.get("v", 1) != PROTOCOL_VERSION:
        raise FrameError(
            "bad_version", f"unsupported protocol version; this server speaks v{PROTOCOL_VERSION}"
        )
    if data.get("type") not in ("hello", "send", "history"):
        raise FrameError("unknown_type", f"unknown frame type {str(data.get('type'))[:40]!r}")
    try:
        return _client_frame.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        raise FrameError("bad_frame", f"{where}: {first['msg']}") from None


def error_frame(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


def event_frame(event: Outbound) -> str:
    frame: dict[str, Any]
    match event:
        case TurnStarted(turn_id=turn_id):
            frame = {"type": "turn_started", "turn_id": turn_id}
        case TextDelta(turn_id=turn_id, text=text):
            frame = {"type": "delta", "turn_id": turn_id, "text": text}
        case ToolActivity():
            frame = {
                "type": "tool",
                "turn_id": event.turn_id,
                "call_id": event.call_id,
                "tool": event.tool,
                "phase": event.phase,
                "arguments": event.arguments,
                "result": event.result,
                "ok": event.ok,
            }
        case FinalReply(turn_id=turn_id, text=text, outbox_id=outbox_id):
            frame = {"type": "reply", "turn_id": turn_id, "text": text, "outbox_id": outbox_id}
        case TurnFailed(turn_id=turn_id, message=message):
            frame = {"type": "failed", "turn_id": turn_id, "message": message}
        case Notice(text=text):
            frame = {"type": "notice", "text": text}
    return json.dumps(frame)


def history_frame(messages: tuple[StoredMessage, ...] | list[StoredMessage], *, more: bool) -> str:
    items = []
    for stored in messages:
        message = stored.message
        item: dict[str, Any] = {"id": stored.id, "role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
            ]
        if message.role == "tool":
            item["tool_call_id"] = message.tool_call_id
            item["name"] = message.name
        items.append(item)
    return json.dumps({"type": "history", "messages": items, "more": more})
