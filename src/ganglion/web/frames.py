"""The web chat's websocket protocol, version 1: its frames, defined once.

Frames are small JSON objects with a "type". This module is the protocol's one
definition: the type names (as `Literal` types and constants), each frame's fields (as
`TypedDict`s, so mypy checks every place that builds or reads one), the builders of what
a client sends and the reading of what a server sends, and the limits of every client
frame's fields (as `annotated_types` constraints on the `TypedDict`s: a thread id of the
web's pattern, a bounded message id and row id, a non-empty text). The server
(`web.protocol`) validates client frames with these very definitions (pydantic's
`TypeAdapter`); nothing is written twice. It is pure (json, typing and the constraint
markers only): `ganglion chat` uses it without importing pydantic or the daemon.

Client -> server:

    {"v": 1, "type": "auth", "token": "..."}
        a page's first frame: the access token (a page cannot set headers on a
        websocket). A socket opened with `Authorization: Bearer` skips it. A wrong or
        missing token closes the socket with code 4001 ("unauthorised").
    {"v": 1, "type": "hello", "thread_id": "web_<hex>", "last_seen": 12 | null}
        binds the socket to a conversation (the tab's, or /c/<thread_id>); the first
        frame after the token.
    {"v": 1, "type": "send", "id": "<client message id>", "text": "...",
     "attachments": [{"path": "inbox/web_<hex>/<file>", "mimetype": "image/png",
                      "voice": false}]}
        a message or a /command. `id` makes a resend after a reconnect idempotent.
        `attachments` (optional, at most `MAX_ATTACHMENTS`): files uploaded first with
        `POST /api/files/<thread_id>?name=<name>[&voice=1]` (the bytes as the body, their
        type as Content-Type, `Authorization: Bearer <token>`; answered with the
        attachment's `path`, or 413 past `web.max_upload_bytes`); `voice` marks a
        recording to be transcribed. A send needs text or an attachment.
    {"v": 1, "type": "history", "before_id": 123}
        an older page of the transcript.
    {"v": 1, "type": "stop", "turn_id": "..."}
        stop a running turn: what it streamed is kept as its `reply`, then a
        `notice` "Stopped." (a turn not running is left alone).
    {"v": 1, "type": "rewind", "id": "<client message id>", "turn_id": "...", "text": null}
        take back the conversation's last turn, `turn_id` (the owner's last message and
        everything after it), and answer it again as a new turn: with the same message
        (regenerate) or, given a `text`, with that text instead (an edit). `id` names the
        new turn as a send's id does, and is answered the same way (see "Correlation").
    {"v": 1, "type": "versions", "turn_id": "..."}
        the versions of the last turn's answer (answered with `versions`).
    {"v": 1, "type": "choose_version", "turn_id": "..."}
        show the version `turn_id` of the last turn's answer instead of the one shown
        (see "Versions").
    {"v": 1, "type": "list_threads", "archived": false}
        the conversations (answered with `threads`).
    {"v": 1, "type": "search", "query": "words"}
        search every conversation's text (answered with `search_results`).
    {"v": 1, "type": "rename", "thread_id": "web_<hex>", "title": "..."}
    {"v": 1, "type": "archive", "thread_id": "web_<hex>", "archived": true}
    {"v": 1, "type": "delete", "thread_id": "web_<hex>"}
        change a conversation (answered with a fresh `threads`).
    {"v": 1, "type": "usage"}
        what this conversation spent (in all and today), what every conversation spent
        today, and the model it talks to (answered with `usage`).
    {"v": 1, "type": "approve", "approval_id": "...", "answer": "allow" | "always" | "deny"}
        answer a question (`approval`) asked in this conversation: allow the call once,
        always (a rule naming exactly this call is added to `approvals.yaml`), or deny
        it. Answered with a `notice` saying what came of it (and `approval_settled` to
        every tab), or `error` `not_open` when it is not open here.

Server -> client:

    welcome {thread_id, protocol, max_message_bytes, title, archived}
                                           after a valid hello
    history {messages: [...], more, before_id}
                                           a page of the transcript: the newest one
                                           after hello (`before_id` null, ending with
                                           the turns still queued), or the page asked for
    accepted {id, turn_id, state, duplicate}
                                           a send is durable (see "Correlation" below)
    turn_started {turn_id, source, label}  the assistant is working; `source` is 'user',
                                           'reminder' or 'heartbeat', `label` what a
                                           reminder said (never the model's instructions)
    delta {turn_id, text}                  streamed tokens
    tool {turn_id, call_id, tool, phase, arguments, result, ok, card}
                                           `card` (at the end): the call in the owner's
                                           words {title, output, status}
    reply {turn_id, text, outbox_id}       the final answer, as Markdown (a page renders it,
                                           as it rendered the `delta`s before it)
    file {turn_id, attachment, outbox_id}  a file the assistant sends (`send_file`)
    failed {turn_id, message}              the turn failed; message is safe to show
    notice {text, turn_id}                 command output, reminders, system notes
                                           (what a tool kept, in the owner's words)
    approval {approval_id, turn_id, tool, call, why, from_thread, expires_at, always}
                                           a tool call waits for the owner's answer
                                           (`call`: the exact call; `from_thread`: the
                                           conversation whose turn made it; `always`:
                                           "always allow" can be offered); sent again
                                           after a hello while it is open
    usage {thread_id, day, model, model_id, conversation, conversation_today,
           everyone_today}             each a {tokens_in, tokens_out, calls, estimated,
                                           cost}: the answer to a `usage` request
    approval_settled {approval_id, outcome, by}
                                           answered or withdrawn: once, always, owner
                                           (denied), timeout, stop, ended, nobody
    versions {turn_id, turns}              the answer to a `versions` request: the turns
                                           whose answers are versions of `turn_id`'s
                                           (itself among them), oldest first
    threads {items: [...], archived}       the conversations, most recent first
    thread_changed {thread_id, change}     a conversation was 'created' (its first
                                           message is stored), 'renamed' (from any tab,
                                           or named by the model after its first
                                           answer), 'archived', 'unarchived' or
                                           'deleted' (from any tab), or is
                                           'active' again (a reminder spoke in it, which
                                           brings it out of the archive), or shows
                                           another 'version' of its last answer: sent to
                                           every session, whatever conversation it follows
    new_conversation {thread_id, previous, text}
                                           `/new` in a web conversation: `previous` is
                                           archived, intact, and the session now follows
                                           the new `thread_id` (a page opens its address);
                                           `text` says where the old one went
    search_results {query, hits: [...]}    messages that matched, best first
    error {code, message, id}              a frame was refused; the session goes on.
                                           `id` names the refused send (null for other
                                           frames): that message was not taken and
                                           will not be answered (`too_large`,
                                           `rate_limited`, `bad_frame`, `not_stored`;
                                           for a rewind also `busy`, `not_last`,
                                           `nothing_to_rewind`, `compacted`).
                                           A hello for a deleted conversation gets
                                           `deleted` and binds nothing

Errors never end the session except for a missing or wrong token (close code 4001) and
repeated floods (1008), which close the socket with a reason.

Correlation: a client picks each send's `id` (letters, digits, `_`, `-`; unique in its
conversation). Exactly one answer names it: `accepted` (the message is on disk and will
be answered) or `error` with that `id` (it was not taken; send it again, with the same
id, to retry). `accepted.turn_id` is the turn that answers it (null for a /command,
whose output comes as a `notice`); `turn_started`, `delta`, `tool`, `reply` and `failed`
carry that turn id. Sending an id again is safe: it is never answered twice, and the
`accepted` says `duplicate: true` with the state its turn is in ('queued', 'running',
'done' or 'failed'; a command run already is 'done'). In a `history` page, a person's
message carries its `turn_id` too, so a client that reconnects can tell which of its
unacknowledged sends are there already. Every row of the conversation comes back in a
history page, in order: messages, commands as typed (`kind: "command"`), their output
and other notices (`kind: "notice"`), failed turns (`kind: "failed"`), and the inputs
of reminder and heartbeat turns (`source`, with a `label`, never their instructions).

Attachments: a history item and a `file` frame carry `attachments` / `attachment`
objects {path, name, mimetype, size, kind ('image', 'audio', 'voice', 'video', 'file'),
url}; `url` is `GET /api/files/<thread_id>/<file>` with `Authorization: Bearer`, served
as `Content-Disposition: attachment` with `nosniff`, typed as an image only for PNG,
JPEG, GIF and WebP (a page shows those from a blob: URL; anything else is a download).

Rewinding: a `rewind` is correlated like a send (its `id`, then `accepted` or `error`).
Once it is accepted, the turn named by `turn_id` and every row after it are gone from
the conversation (a client removes them from the screen; no history page brings them
back) and the new turn is answered like a sent message. It is taken only while nothing
is queued or running in the conversation, and only for the last turn, which must be the
owner's message (not a reminder's) and not yet summarised by a compaction; otherwise the
`error` says which (`busy`, `not_last`, `nothing_to_rewind`, `compacted`) and nothing
changed.

Versions: a regenerated answer keeps the earlier ones. While its turn is the last one, a
`versions` request names them, and `choose_version` shows another: by the same rules as
a rewind (else an `error` with the same codes); once done, every session is sent
`thread_changed` 'version', and one that follows the conversation reads it again (hello).
The model sees only the version shown.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final, Literal, NotRequired, cast, get_args

from annotated_types import Ge, Le, MaxLen, MinLen, Predicate

# pydantic validates TypedDicts from typing_extensions only, on Python 3.11.
from typing_extensions import TypedDict

from ganglion.ids import WEB_THREAD_PATTERN

__all__ = [
    "ACCEPTED",
    "APPROVAL",
    "APPROVAL_SETTLED",
    "APPROVE",
    "ARCHIVE",
    "AUTH",
    "CHOOSE_VERSION",
    "CLIENT_FRAMES",
    "CLIENT_FRAME_TYPES",
    "CLOSE_UNAUTHORISED",
    "DELETE",
    "DELTA",
    "ERROR",
    "FAILED",
    "FILE",
    "HELLO",
    "HISTORY",
    "LIST_THREADS",
    "MAX_APPROVAL_ID",
    "MAX_ATTACHMENTS",
    "MAX_MESSAGE_ID",
    "MAX_MIMETYPE",
    "MAX_PATH",
    "MAX_QUERY",
    "MAX_ROW_ID",
    "MAX_TITLE",
    "MAX_TOKEN",
    "MAX_TURN_ID",
    "NEW_CONVERSATION",
    "NOTICE",
    "PROTOCOL_VERSION",
    "RENAME",
    "REPLY",
    "REWIND",
    "SEARCH",
    "SEARCH_RESULTS",
    "SEND",
    "SERVER_FRAME_TYPES",
    "STOP",
    "THREADS",
    "THREAD_CHANGED",
    "TOOL",
    "TURN_STARTED",
    "USAGE",
    "VERSIONS",
    "WELCOME",
    "AcceptedFrame",
    "AcceptedType",
    "ApprovalFrame",
    "ApprovalSettledFrame",
    "ApprovalSettledType",
    "ApprovalType",
    "ApproveFrame",
    "ApproveType",
    "ArchiveFrame",
    "ArchiveType",
    "AttachmentItem",
    "AttachmentRef",
    "AuthFrame",
    "AuthType",
    "ChooseVersionFrame",
    "ChooseVersionType",
    "ClientFrame",
    "ClientFrameType",
    "DeleteFrame",
    "DeleteType",
    "DeltaFrame",
    "DeltaType",
    "ErrorFrame",
    "ErrorType",
    "FailedFrame",
    "FailedType",
    "FileFrame",
    "FileType",
    "HelloFrame",
    "HelloType",
    "HistoryFrame",
    "HistoryItem",
    "HistoryRequestFrame",
    "HistoryToolCall",
    "HistoryType",
    "ListThreadsFrame",
    "ListThreadsType",
    "NewConversationFrame",
    "NewConversationType",
    "NoticeFrame",
    "NoticeType",
    "RenameFrame",
    "RenameType",
    "ReplyFrame",
    "ReplyType",
    "RewindFrame",
    "RewindType",
    "SearchFrame",
    "SearchHitItem",
    "SearchResultsFrame",
    "SearchResultsType",
    "SearchType",
    "SendFrame",
    "SendType",
    "ServerFrame",
    "ServerFrameType",
    "StopFrame",
    "StopType",
    "ThreadChange",
    "ThreadChangedFrame",
    "ThreadChangedType",
    "ThreadItem",
    "ThreadsFrame",
    "ThreadsType",
    "ToolCard",
    "ToolFrame",
    "ToolType",
    "TurnStartedFrame",
    "TurnStartedType",
    "TurnState",
    "UsageFrame",
    "UsageRequestFrame",
    "UsageTotals",
    "UsageType",
    "Version",
    "VersionsFrame",
    "VersionsRequestFrame",
    "VersionsType",
    "WelcomeFrame",
    "WelcomeType",
    "approve",
    "archive",
    "auth",
    "choose_version",
    "delete",
    "encode",
    "hello",
    "history_request",
    "list_threads",
    "parse_server_frame",
    "rename",
    "rewind",
    "search",
    "send",
    "stop",
    "usage",
    "versions",
]

PROTOCOL_VERSION: Final = 1
Version = Literal[1]
CLOSE_UNAUTHORISED: Final = 4001  # the websocket close code for a missing or wrong token

# The type names. "history" and "usage" are both a client's request and the server's answer.
AuthType = Literal["auth"]
HelloType = Literal["hello"]
SendType = Literal["send"]
HistoryType = Literal["history"]
WelcomeType = Literal["welcome"]
TurnStartedType = Literal["turn_started"]
DeltaType = Literal["delta"]
ToolType = Literal["tool"]
ReplyType = Literal["reply"]
FileType = Literal["file"]
FailedType = Literal["failed"]
NoticeType = Literal["notice"]
ErrorType = Literal["error"]
AcceptedType = Literal["accepted"]
ListThreadsType = Literal["list_threads"]
SearchType = Literal["search"]
RenameType = Literal["rename"]
ArchiveType = Literal["archive"]
DeleteType = Literal["delete"]
StopType = Literal["stop"]
RewindType = Literal["rewind"]
ApproveType = Literal["approve"]
ApprovalType = Literal["approval"]
ApprovalSettledType = Literal["approval_settled"]
ThreadsType = Literal["threads"]
UsageType = Literal["usage"]
VersionsType = Literal["versions"]
ChooseVersionType = Literal["choose_version"]
SearchResultsType = Literal["search_results"]
ThreadChangedType = Literal["thread_changed"]
NewConversationType = Literal["new_conversation"]
ThreadChange = Literal[
    "created", "renamed", "archived", "unarchived", "deleted", "active", "version"
]
TurnState = Literal["queued", "running", "done", "failed"]

AUTH: Final[AuthType] = "auth"
HELLO: Final[HelloType] = "hello"
SEND: Final[SendType] = "send"
HISTORY: Final[HistoryType] = "history"
WELCOME: Final[WelcomeType] = "welcome"
TURN_STARTED: Final[TurnStartedType] = "turn_started"
DELTA: Final[DeltaType] = "delta"
TOOL: Final[ToolType] = "tool"
REPLY: Final[ReplyType] = "reply"
FILE: Final[FileType] = "file"
FAILED: Final[FailedType] = "failed"
NOTICE: Final[NoticeType] = "notice"
ERROR: Final[ErrorType] = "error"
ACCEPTED: Final[AcceptedType] = "accepted"
LIST_THREADS: Final[ListThreadsType] = "list_threads"
SEARCH: Final[SearchType] = "search"
RENAME: Final[RenameType] = "rename"
ARCHIVE: Final[ArchiveType] = "archive"
DELETE: Final[DeleteType] = "delete"
STOP: Final[StopType] = "stop"
REWIND: Final[RewindType] = "rewind"
APPROVE: Final[ApproveType] = "approve"
APPROVAL: Final[ApprovalType] = "approval"
APPROVAL_SETTLED: Final[ApprovalSettledType] = "approval_settled"
THREADS: Final[ThreadsType] = "threads"
USAGE: Final[UsageType] = "usage"
VERSIONS: Final[VersionsType] = "versions"
CHOOSE_VERSION: Final[ChooseVersionType] = "choose_version"
SEARCH_RESULTS: Final[SearchResultsType] = "search_results"
THREAD_CHANGED: Final[ThreadChangedType] = "thread_changed"
NEW_CONVERSATION: Final[NewConversationType] = "new_conversation"

ClientFrameType = Literal[
    AuthType,
    HelloType,
    SendType,
    HistoryType,
    StopType,
    RewindType,
    ListThreadsType,
    SearchType,
    RenameType,
    ArchiveType,
    DeleteType,
    ApproveType,
    UsageType,
    VersionsType,
    ChooseVersionType,
]
ServerFrameType = Literal[
    WelcomeType,
    HistoryType,
    AcceptedType,
    ThreadsType,
    SearchResultsType,
    ThreadChangedType,
    NewConversationType,
    TurnStartedType,
    DeltaType,
    ToolType,
    ReplyType,
    FileType,
    FailedType,
    NoticeType,
    ErrorType,
    ApprovalType,
    ApprovalSettledType,
    UsageType,
    VersionsType,
]
CLIENT_FRAME_TYPES: Final[frozenset[str]] = frozenset(get_args(ClientFrameType))
SERVER_FRAME_TYPES: Final[frozenset[str]] = frozenset(get_args(ServerFrameType))


# Client -> server. What a server accepts, with the limits it enforces; a field with a
# default there is `NotRequired` here (`v`: the current version).

MAX_TOKEN = 512
MAX_MESSAGE_ID = 100
MAX_TURN_ID = 300
MAX_TITLE = 200
MAX_APPROVAL_ID = 32
MAX_QUERY = 500
MAX_ROW_ID = 2**63 - 1  # SQLite's integers: a larger id names no row and cannot be bound
MAX_ATTACHMENTS = 10
MAX_PATH = 300
MAX_MIMETYPE = 100

_WEB_THREAD = re.compile(WEB_THREAD_PATTERN)
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]+")
_MIMETYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")

WebThreadId = Annotated[str, Predicate(_WEB_THREAD.fullmatch)]
MessageId = Annotated[str, MinLen(1), MaxLen(MAX_MESSAGE_ID), Predicate(_MESSAGE_ID.fullmatch)]
TurnId = Annotated[str, MinLen(1), MaxLen(MAX_TURN_ID)]
Text = Annotated[str, MinLen(1)]


class AuthFrame(TypedDict):
    v: NotRequired[Version]
    type: AuthType
    token: Annotated[str, MinLen(1), MaxLen(MAX_TOKEN)]


class HelloFrame(TypedDict):
    v: NotRequired[Version]
    type: HelloType
    thread_id: WebThreadId
    last_seen: NotRequired[Annotated[int, Ge(0), Le(MAX_ROW_ID)] | None]


class AttachmentRef(TypedDict):
    path: Annotated[str, MinLen(1), MaxLen(MAX_PATH)]  # as the upload answered it
    mimetype: Annotated[str, MaxLen(MAX_MIMETYPE), Predicate(_MIMETYPE.fullmatch)]
    voice: NotRequired[bool]  # a recording, to be transcribed


class SendFrame(TypedDict):
    v: NotRequired[Version]
    type: SendType
    id: MessageId
    text: str  # may be empty only with attachments (`web.protocol` holds it to that)
    attachments: NotRequired[Annotated[list[AttachmentRef], MaxLen(MAX_ATTACHMENTS)]]


class HistoryRequestFrame(TypedDict):
    v: NotRequired[Version]
    type: HistoryType
    before_id: Annotated[int, Ge(1), Le(MAX_ROW_ID)]


class StopFrame(TypedDict):
    v: NotRequired[Version]
    type: StopType
    turn_id: TurnId


class RewindFrame(TypedDict):
    v: NotRequired[Version]
    type: RewindType
    id: MessageId
    turn_id: TurnId
    text: NotRequired[Text | None]  # an edit's new message; absent or null: regenerate


class VersionsRequestFrame(TypedDict):
    v: NotRequired[Version]
    type: VersionsType
    turn_id: TurnId


class ChooseVersionFrame(TypedDict):
    v: NotRequired[Version]
    type: ChooseVersionType
    turn_id: TurnId


class ListThreadsFrame(TypedDict):
    v: NotRequired[Version]
    type: ListThreadsType
    archived: NotRequired[bool]  # absent: the conversations not archived


class SearchFrame(TypedDict):
    v: NotRequired[Version]
    type: SearchType
    query: Annotated[str, MaxLen(MAX_QUERY)]


class RenameFrame(TypedDict):
    v: NotRequired[Version]
    type: RenameType
    thread_id: WebThreadId
    title: Annotated[str, MaxLen(MAX_TITLE)]


class ArchiveFrame(TypedDict):
    v: NotRequired[Version]
    type: ArchiveType
    thread_id: WebThreadId
    archived: NotRequired[bool]  # absent: archive it


class DeleteFrame(TypedDict):
    v: NotRequired[Version]
    type: DeleteType
    thread_id: WebThreadId


class UsageRequestFrame(TypedDict):
    v: NotRequired[Version]
    type: UsageType


class ApproveFrame(TypedDict):
    v: NotRequired[Version]
    type: ApproveType
    approval_id: Annotated[str, MinLen(1), MaxLen(MAX_APPROVAL_ID)]
    answer: Literal["allow", "always", "deny"]


ClientFrame = (
    AuthFrame
    | HelloFrame
    | SendFrame
    | HistoryRequestFrame
    | StopFrame
    | RewindFrame
    | ListThreadsFrame
    | SearchFrame
    | RenameFrame
    | ArchiveFrame
    | DeleteFrame
    | ApproveFrame
    | UsageRequestFrame
    | VersionsRequestFrame
    | ChooseVersionFrame
)
CLIENT_FRAMES: Final = get_args(ClientFrame)


# Server -> client.


class WelcomeFrame(TypedDict):
    type: WelcomeType
    thread_id: str
    protocol: int
    max_message_bytes: int
    title: NotRequired[str | None]  # the conversation's title (None: it has no messages yet)
    archived: NotRequired[bool]  # it is listed under Archived


class HistoryToolCall(TypedDict):
    id: str
    name: str
    arguments: str


class AttachmentItem(TypedDict):
    path: str
    name: str
    mimetype: str
    size: int
    kind: str  # 'image', 'audio', 'voice', 'video', 'file'
    url: str  # GET it with the token (see "Attachments")


class HistoryItem(TypedDict):
    id: int
    role: str
    content: str | None
    tool_calls: NotRequired[list[HistoryToolCall]]
    tool_call_id: NotRequired[str | None]  # tool results only, with `name`
    name: NotRequired[str | None]
    turn_id: NotRequired[str | None]
    kind: NotRequired[str]  # 'command', 'notice', 'failed': shown, never sent to the model
    source: NotRequired[str]  # a turn's input: 'user', 'reminder', 'heartbeat'
    label: NotRequired[str | None]  # what a reminder said
    queued: NotRequired[bool]  # a turn's input still waiting for its turn
    card: NotRequired[ToolCard]  # a tool's result, as in `tool`
    attachments: NotRequired[list[AttachmentItem]]  # what came with it (or a tool sent)


class HistoryFrame(TypedDict):
    type: HistoryType
    messages: list[HistoryItem]
    more: bool
    before_id: int | None


class AcceptedFrame(TypedDict):
    type: AcceptedType
    id: str
    turn_id: str | None
    state: TurnState
    duplicate: bool


class TurnStartedFrame(TypedDict):
    type: TurnStartedType
    turn_id: str
    source: str
    label: str | None


class DeltaFrame(TypedDict):
    type: DeltaType
    turn_id: str
    text: str


class ToolCard(TypedDict):
    """A finished tool call as the owner reads it (`ganglion.web.wording`)."""

    title: str  # "Reminder set for 18:30 today", "Ran ls -l"
    output: str  # what it returned, without the model's framing
    status: str | None  # "exit status 1", "failed"; None when it went as planned


class ToolFrame(TypedDict):
    type: ToolType
    turn_id: str
    call_id: str
    tool: str
    phase: Literal["start", "end"]
    arguments: str
    result: str
    ok: bool
    card: ToolCard | None  # at the end (None at the start)


class ReplyFrame(TypedDict):
    type: ReplyType
    turn_id: str
    text: str
    outbox_id: int | None


class FileFrame(TypedDict):
    type: FileType
    turn_id: str
    attachment: AttachmentItem
    outbox_id: int


class FailedFrame(TypedDict):
    type: FailedType
    turn_id: str
    message: str


class NoticeFrame(TypedDict):
    type: NoticeType
    text: str
    turn_id: str | None  # the turn it is about, if any


class ApprovalFrame(TypedDict):
    type: ApprovalType
    approval_id: str
    turn_id: str
    tool: str
    call: str  # the exact call, as the owner is to read it
    why: str  # the rule or default that asks
    from_thread: str  # the conversation whose turn made the call
    expires_at: float  # epoch seconds: denied if unanswered by then
    always: bool  # "always allow this" can be offered


class UsageTotals(TypedDict):
    tokens_in: int
    tokens_out: int
    calls: int
    estimated: int  # calls whose figures are Ganglion's estimate (the server said none)
    cost: dict[str, float]  # by currency; empty without prices


class UsageFrame(TypedDict):
    type: UsageType
    thread_id: str
    day: str  # the owner's date the "today" figures are of
    model: str | None  # the owner's choice (`/model NAME`); None: the main model
    model_id: str  # what that endpoint serves
    conversation: UsageTotals
    conversation_today: UsageTotals
    everyone_today: UsageTotals


class ApprovalSettledFrame(TypedDict):
    type: ApprovalSettledType
    approval_id: str
    outcome: str
    by: str | None


class ErrorFrame(TypedDict):
    type: ErrorType
    code: str
    message: str
    id: str | None


class ThreadItem(TypedDict):
    thread_id: str
    title: str
    updated_at: float | None
    archived: bool


class ThreadsFrame(TypedDict):
    type: ThreadsType
    items: list[ThreadItem]
    archived: bool


class VersionsFrame(TypedDict):
    type: VersionsType
    turn_id: str
    turns: list[str]


class ThreadChangedFrame(TypedDict):
    type: ThreadChangedType
    thread_id: str
    change: ThreadChange


class NewConversationFrame(TypedDict):
    type: NewConversationType
    thread_id: str
    previous: str
    text: str


class SearchHitItem(TypedDict):
    thread_id: str
    title: str
    message_id: int
    snippet: str  # the matched words between [ and ]


class SearchResultsFrame(TypedDict):
    type: SearchResultsType
    query: str
    hits: list[SearchHitItem]


ServerFrame = (
    WelcomeFrame
    | HistoryFrame
    | AcceptedFrame
    | ThreadsFrame
    | SearchResultsFrame
    | ThreadChangedFrame
    | NewConversationFrame
    | TurnStartedFrame
    | DeltaFrame
    | ToolFrame
    | ReplyFrame
    | FileFrame
    | FailedFrame
    | NoticeFrame
    | ErrorFrame
    | ApprovalFrame
    | ApprovalSettledFrame
    | UsageFrame
    | VersionsFrame
)


def encode(frame: ClientFrame | ServerFrame) -> str:
    """The frame as the JSON text a websocket carries."""
    return json.dumps(frame)


def auth(token: str) -> str:
    """A page's first frame: the access token."""
    return encode(AuthFrame(v=PROTOCOL_VERSION, type=AUTH, token=token))


def hello(thread_id: str, *, last_seen: int | None = None) -> str:
    """A client's first frame, binding the socket to `thread_id`."""
    return encode(
        HelloFrame(v=PROTOCOL_VERSION, type=HELLO, thread_id=thread_id, last_seen=last_seen)
    )


def send(message_id: str, text: str, attachments: list[AttachmentRef] | None = None) -> str:
    """A message or a /command; `message_id` makes a resend idempotent."""
    frame = SendFrame(v=PROTOCOL_VERSION, type=SEND, id=message_id, text=text)
    if attachments:
        frame["attachments"] = attachments
    return encode(frame)


def history_request(before_id: int) -> str:
    """Ask for the page of the transcript before the message `before_id`."""
    return encode(HistoryRequestFrame(v=PROTOCOL_VERSION, type=HISTORY, before_id=before_id))


def stop(turn_id: str) -> str:
    """Stop the running turn `turn_id`."""
    return encode(StopFrame(v=PROTOCOL_VERSION, type=STOP, turn_id=turn_id))


def usage() -> str:
    """Ask what the conversation spent and which model it talks to."""
    return encode(UsageRequestFrame(v=PROTOCOL_VERSION, type=USAGE))


def approve(approval_id: str, answer: Literal["allow", "always", "deny"]) -> str:
    """Answer question `approval_id`: allow once, always, or deny."""
    return encode(
        ApproveFrame(v=PROTOCOL_VERSION, type=APPROVE, approval_id=approval_id, answer=answer)
    )


def rewind(message_id: str, turn_id: str, text: str | None = None) -> str:
    """Take back the last turn `turn_id` and answer it again, as the new turn of
    `message_id`: regenerated, or with `text` as the owner's message (an edit)."""
    return encode(
        RewindFrame(v=PROTOCOL_VERSION, type=REWIND, id=message_id, turn_id=turn_id, text=text)
    )


def versions(turn_id: str) -> str:
    """Ask which versions the last turn's answer has."""
    return encode(VersionsRequestFrame(v=PROTOCOL_VERSION, type=VERSIONS, turn_id=turn_id))


def choose_version(turn_id: str) -> str:
    """Show the version `turn_id` of the last turn's answer."""
    return encode(ChooseVersionFrame(v=PROTOCOL_VERSION, type=CHOOSE_VERSION, turn_id=turn_id))


def list_threads(*, archived: bool = False) -> str:
    """Ask for the conversations (the archived ones when `archived`)."""
    return encode(ListThreadsFrame(v=PROTOCOL_VERSION, type=LIST_THREADS, archived=archived))


def search(query: str) -> str:
    """Search every conversation's text for `query`'s words."""
    return encode(SearchFrame(v=PROTOCOL_VERSION, type=SEARCH, query=query))


def rename(thread_id: str, title: str) -> str:
    return encode(RenameFrame(v=PROTOCOL_VERSION, type=RENAME, thread_id=thread_id, title=title))


def archive(thread_id: str, *, archived: bool = True) -> str:
    return encode(
        ArchiveFrame(v=PROTOCOL_VERSION, type=ARCHIVE, thread_id=thread_id, archived=archived)
    )


def delete(thread_id: str) -> str:
    return encode(DeleteFrame(v=PROTOCOL_VERSION, type=DELETE, thread_id=thread_id))


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
