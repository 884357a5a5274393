"""Chat records: the messages of a conversation as Ganglion stores and sends them.

These are the OpenAI chat-completions message shapes as frozen records. `to_api` gives the
wire form for `/v1/chat/completions`; the store keeps the same fields, so a history read
back from the database is sent to the model exactly as it was produced (an assistant
message with `tool_calls` is always followed by one `tool` message per call id).

Attachments: a message may carry files (`Attachment`: a reference to a file kept in the
inbox, never its bytes). They are stored with the message and kept through compaction;
the model reads what came and where it is in a note after the text (`attachment_note`).
`images` are the data URLs of the message's pictures for one request only (the turn
whose message brought them, with `llm.vision`): never stored, so a later turn does not
resend them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "ATTACHMENT_KINDS",
    "Attachment",
    "AttachmentKind",
    "ChatMessage",
    "Role",
    "ToolCall",
    "Usage",
    "attachment_kind",
    "attachment_note",
    "describe_size",
]

Role = Literal["system", "user", "assistant", "tool"]
AttachmentKind = Literal["image", "audio", "voice", "video", "file"]
ATTACHMENT_KINDS: Final = ("image", "audio", "voice", "video", "file")


def describe_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def attachment_kind(mimetype: str, *, voice: bool = False) -> AttachmentKind:
    """What a file of `mimetype` is to the conversation (a voice message is audio the
    sender recorded to be heard as what they said)."""
    if voice:
        return "voice"
    major = mimetype.split("/", 1)[0]
    if major == "image":
        return "image"
    if major in ("audio", "video"):
        return "audio" if major == "audio" else "video"
    return "file"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with (or was sent in) a message: `path` relative to the data
    directory (what the file tools take), the name it was sent with, its type, size and
    kind."""

    path: str
    name: str
    mimetype: str
    size: int
    kind: AttachmentKind = "file"

    def described(self) -> str:
        """What came and where it is, in a few words."""
        return f"{self.name} ({self.mimetype}, {describe_size(self.size)}), saved as {self.path}"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "mimetype": self.mimetype,
            "size": self.size,
            "kind": self.kind,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attachment:
        kind = data.get("kind")
        return cls(
            path=str(data["path"]),
            name=str(data["name"]),
            mimetype=str(data["mimetype"]),
            size=int(data["size"]),
            kind=kind if kind in ATTACHMENT_KINDS else "file",
        )


def attachment_note(attachments: Sequence[Attachment], *, shown: bool) -> str:
    """What the model reads of a message's attachments: one line each. `shown`: the
    message's images go with this request (as image parts)."""
    lines = []
    for item in attachments:
        match item.kind:
            case "image" if shown:
                how = "the image is shown to you below"
            case "image":
                how = (
                    "you cannot see this image (it is not shown to you); it stays on disk, "
                    "the file tools can reach it"
                )
            case "voice":
                how = "a voice message: the text of this message is what was heard in it"
            case _:
                how = "the file tools can read it"
        lines.append(f"[Attached: {item.described()}; {how}.]")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call requested by the model. `arguments` is the raw JSON text it wrote."""

    id: str
    name: str
    arguments: str

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one answer as the server reported them (all zero: it reported none);
    `cached_tokens`: the part of the prompt the server served from its cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def reported(self) -> bool:
        return bool(self.prompt_tokens or self.completion_tokens)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, as sent to the model.

    `tool_calls` is set on assistant messages that call tools; `tool_call_id` and `name` on
    the `tool` messages that answer them. `attachments` and `images`: see the module
    docstring.
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = field(default=())
    tool_call_id: str | None = None
    name: str | None = None
    attachments: tuple[Attachment, ...] = field(default=())
    images: tuple[str, ...] = field(default=())

    def text_for_model(self, *, images: bool = True) -> str | None:
        """The content with the attachments' note after it; `images`: the message's
        images go with the request."""
        if not self.attachments:
            return self.content
        note = attachment_note(self.attachments, shown=images and bool(self.images))
        return f"{self.content}\n\n{note}" if self.content else note

    def to_api(self, *, images: bool = True) -> dict[str, Any]:
        """The wire form; `images` False leaves the image parts out (a server that does
        not take them), and the note then says so."""
        content: Any = self.text_for_model(images=images)
        if images and self.images:
            content = [
                {"type": "text", "text": content or ""},
                *({"type": "image_url", "image_url": {"url": url}} for url in self.images),
            ]
        message: dict[str, Any] = {"role": self.role, "content": content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_api() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.role == "tool" and self.name is not None:
            message["name"] = self.name
        return message
