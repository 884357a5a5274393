"""The server's side of the web chat's protocol (its frames: `ganglion.web.frames`).

Client frames are parsed and validated here, with pydantic models that take their type
names from `frames` and have the same fields as its `TypedDict`s, plus the limits a
server must enforce (a thread id of the web's pattern, a bounded message id, a non-empty
text). A refused frame is a `FrameError` with a code for the `error` frame. Outbound
events and history pages become the server's frames, built as `frames`' `TypedDict`s.
"""

from __future__ import annotations

import json
from typing import Annotated

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
from ganglion.web import frames

__all__ = [
    "ClientFrame",
    "FrameError",
    "Hello",
    "HistoryRequest",
    "Send",
    "error_frame",
    "event_frame",
    "history_frame",
    "parse_client_frame",
    "welcome_frame",
]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: frames.Version = frames.PROTOCOL_VERSION


class Hello(_Frame):
    type: frames.HelloType
    thread_id: str = Field(pattern=WEB_THREAD_PATTERN)
    last_seen: int | None = None


class Send(_Frame):
    type: frames.SendType
    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    text: str = Field(min_length=1)


class HistoryRequest(_Frame):
    type: frames.HistoryType
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
    if data.get("v", frames.PROTOCOL_VERSION) != frames.PROTOCOL_VERSION:
        raise FrameError(
            "bad_version",
            f"unsupported protocol version; this server speaks v{frames.PROTOCOL_VERSION}",
        )
    if data.get("type") not in frames.CLIENT_FRAME_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {str(data.get('type'))[:40]!r}")
    try:
        return _client_frame.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        raise FrameError("bad_frame", f"{where}: {first['msg']}") from None


def welcome_frame(thread_id: str) -> str:
    return frames.encode(
        frames.WelcomeFrame(
            type=frames.WELCOME, thread_id=thread_id, protocol=frames.PROTOCOL_VERSION
        )
    )


def error_frame(code: str, message: str) -> str:
    return frames.encode(frames.ErrorFrame(type=frames.ERROR, code=code, message=message))


def event_frame(event: Outbound) -> str:
    frame: frames.ServerFrame
    match event:
        case TurnStarted(turn_id=turn_id):
            frame = frames.TurnStartedFrame(type=frames.TURN_STARTED, turn_id=turn_id)
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
            )
        case FinalReply(turn_id=turn_id, text=text, outbox_id=outbox_id):
            frame = frames.ReplyFrame(
                type=frames.REPLY, turn_id=turn_id, text=text, outbox_id=outbox_id
            )
        case TurnFailed(turn_id=turn_id, message=message):
            frame = frames.FailedFrame(type=frames.FAILED, turn_id=turn_id, message=message)
        case Notice(text=text):
            frame = frames.NoticeFrame(type=frames.NOTICE, text=text)
    return frames.encode(frame)


def history_frame(messages: tuple[StoredMessage, ...] | list[StoredMessage], *, more: bool) -> str:
    items: list[frames.HistoryItem] = []
    for stored in messages:
        message = stored.message
        item = frames.HistoryItem(id=stored.id, role=message.role, content=message.content)
        if message.tool_calls:
            item["tool_calls"] = [
                frames.HistoryToolCall(id=c.id, name=c.name, arguments=c.arguments)
                for c in message.tool_calls
            ]
        if message.role == "tool":
            item["tool_call_id"] = message.tool_call_id
            item["name"] = message.name
        items.append(item)
    return frames.encode(frames.HistoryFrame(type=frames.HISTORY, messages=items, more=more))
