"""The web chat's websocket protocol, version 1: its frames, defined once.

Frames are small JSON objects with a "type". This module is the protocol's one
definition: the type names (as `Literal` types and constants), each frame's fields (as
`TypedDict`s, so mypy checks every place that builds or reads one), the builders of what
a client sends and the reading of what a server sends. It is pure (json and typing only):
`ganglion chat` uses it without importing pydantic or the daemon. The server
(`web.protocol`) validates client frames with pydantic models that take their type names
from here and have the same fields (a test holds them together).

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
from typing import Any, Final, Literal, NotRequired, TypedDict, cast, get_args

__all__ = [
    "CLIENT_FRAME_TYPES",
    "DELTA",
    "ERROR",
    "FAILED",
    "HELLO",
    "HISTORY",
    "NOTICE",
    "PROTOCOL_VERSION",
    "REPLY",
    "SEND",
    "SERVER_FRAME_TYPES",
    "TOOL",
    "TURN_STARTED",
    "WELCOME",
    "ClientFrame",
    "ClientFrameType",
    "DeltaFrame",
    "DeltaType",
    "ErrorFrame",
    "ErrorType",
    "FailedFrame",
    "FailedType",
    "HelloFrame",
    "HelloType",
    "HistoryFrame",
    "HistoryItem",
    "HistoryRequestFrame",
    "HistoryToolCall",
    "HistoryType",
    "NoticeFrame",
    "NoticeType",
    "ReplyFrame",
    "ReplyType",
    "SendFrame",
    "SendType",
    "ServerFrame",
    "ServerFrameType",
    "ToolFrame",
    "ToolType",
    "TurnStartedFrame",
    "TurnStartedType",
    "Version",
    "WelcomeFrame",
    "WelcomeType",
    "encode",
    "hello",
    "history_request",
    "parse_server_frame",
    "send",
]

PROTOCOL_VERSION: Final = 1
Version = Literal[1]

# The type names. "history" is both a client's request and the server's page.
HelloType = Literal["hello"]
SendType = Literal["send"]
HistoryType = Literal["history"]
WelcomeType = Literal["welcome"]
TurnStartedType = Literal["turn_started"]
DeltaType = Literal["delta"]
ToolType = Literal["tool"]
ReplyType = Literal["reply"]
FailedType = Literal["failed"]
NoticeType = Literal["notice"]
ErrorType = Literal["error"]

HELLO: Final[HelloType] = "hello"
SEND: Final[SendType] = "send"
HISTORY: Final[HistoryType] = "history"
WELCOME: Final[WelcomeType] = "welcome"
TURN_STARTED: Final[TurnStartedType] = "turn_started"
DELTA: Final[DeltaType] = "delta"
TOOL: Final[ToolType] = "tool"
REPLY: Final[ReplyType] = "reply"
FAILED: Final[FailedType] = "failed"
NOTICE: Final[NoticeType] = "notice"
ERROR: Final[ErrorType] = "error"

ClientFrameType = Literal[HelloType, SendType, HistoryType]
ServerFrameType = Literal[
    WelcomeType,
    HistoryType,
    TurnStartedType,
    DeltaType,
    ToolType,
    ReplyType,
    FailedType,
    NoticeType,
    ErrorType,
]
CLIENT_FRAME_TYPES: Final[frozenset[str]] = frozenset(get_args(ClientFrameType))
SERVER_FRAME_TYPES: Final[frozenset[str]] = frozenset(get_args(ServerFrameType))


# Client -> server.


class HelloFrame(TypedDict):
    v: Version
    type: HelloType
    thread_id: str
    last_seen: NotRequired[int | None]


class SendFrame(TypedDict):
    v: Version
    type: SendType
    id: str
    text: str


class HistoryRequestFrame(TypedDict):
    v: Version
    type: HistoryType
    before_id: int


ClientFrame = HelloFrame | SendFrame | HistoryRequestFrame


# Server -> client.


class WelcomeFrame(TypedDict):
    type: WelcomeType
    thread_id: str
    protocol: int


class HistoryToolCall(TypedDict):
    id: str
    name: str
    arguments: str


class HistoryItem(TypedDict):
    id: int
    role: str
    content: str | None
    tool_calls: NotRequired[list[HistoryToolCall]]
    tool_call_id: NotRequired[str | None]  # tool results only, with `name`
    name: NotRequired[str | None]


class HistoryFrame(TypedDict):
    type: HistoryType
    messages: list[HistoryItem]
    more: bool


class TurnStartedFrame(TypedDict):
    type: TurnStartedType
    turn_id: str


class DeltaFrame(TypedDict):
    type: DeltaType
    turn_id: str
    text: str


class ToolFrame(TypedDict):
    type: ToolType
    turn_id: str
    call_id: str
    tool: str
    phase: Literal["start", "end"]
    arguments: str
    result: str
    ok: bool


class ReplyFrame(TypedDict):
    type: ReplyType
    turn_id: str
    text: str
    outbox_id: int | None


class FailedFrame(TypedDict):
    type: FailedType
    turn_id: str
    message: str


class NoticeFrame(TypedDict):
    type: NoticeType
    text: str


class ErrorFrame(TypedDict):
    type: ErrorType
    code: str
    message: str


ServerFrame = (
    WelcomeFrame
    | HistoryFrame
    | TurnStartedFrame
    | DeltaFrame
    | ToolFrame
    | ReplyFrame
    | FailedFrame
    | NoticeFrame
    | ErrorFrame
)


def encode(frame: ClientFrame | ServerFrame) -> str:
    """The frame as the JSON text a websocket carries."""
    return json.dumps(frame)


def hello(thread_id: str, *, last_seen: int | None = None) -> str:
    """A client's first frame, binding the socket to `thread_id`."""
    return encode(
        HelloFrame(v=PROTOCOL_VERSION, type=HELLO, thread_id=thread_id, last_seen=last_seen)
    )


def send(message_id: str, text: str) -> str:
    """A message or a /command; `message_id` makes a resend idempotent."""
    return encode(SendFrame(v=PROTOCOL_VERSION, type=SEND, id=message_id, text=text))


def history_request(before_id: int) -> str:
    """Ask for the page of the transcript before the message `before_id`."""
    return encode(HistoryRequestFrame(v=PROTOCOL_VERSION, type=HISTORY, before_id=before_id))


def parse_server_frame(raw: str | bytes) -> ServerFrame | None:
    """A frame the server sent, or None when it is not one this client knows (not a JSON
    object, or a type added after this version): clients skip those.

    The fields are the server's to get right: they are not checked here.
    """
    try:
        data: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("type") not in SERVER_FRAME_TYPES:
        return None
    return cast(ServerFrame, data)
