"""Configuration: one YAML file validated by pydantic models.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
option. Secrets can come from the environment instead of the file (the environment wins
when both are set, so a service manager can inject them without editing the file; the
Matrix token fills in a `matrix:` section, it does not make one):

    GANGLION_LLM_API_KEY           llm.api_key
    GANGLION_MATRIX_ACCESS_TOKEN   matrix.access_token
    GANGLION_MATRIX_PASSWORD       matrix.password
    GANGLION_MATRIX_RECOVERY_KEY   matrix.recovery_key
    GANGLION_TRANSCRIPTION_API_KEY transcription.api_key
    GANGLION_WEB_TOKEN             web.token

Relative paths in the file are resolved against the file's directory; with no file,
against the current directory. `load_config` turns every failure (unreadable file, YAML
syntax, validation) into one `ConfigError` whose message names the file, the field path
and what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ganglion.beats import ActiveHours
from ganglion.configfile import (
    DEFAULT_CONFIG_NAME,
    ClientView,
    ConfigError,
    plain_client_view,
    read_config_file,
)
from ganglion.entropy import MIN_TOKEN_BITS, estimated_bits
from ganglion.ids import is_valid_thread_id
from ganglion.owned import OwnedFiles

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_DECISIONS",
    "ApprovalConfig",
    "ApprovalRule",
    "BudgetsConfig",
    "CompactionConfig",
    "Config",
    "ConfigError",
    "EndpointConfig",
    "FilesToolConfig",
    "HeartbeatConfig",
    "LLMConfig",
    "LLMTimeouts",
    "LoggingConfig",
    "MCPConfig",
    "MCPServerConfig",
    "MatrixConfig",
    "MemoryToolConfig",
    "NamedModelConfig",
    "PriceConfig",
    "RemindersConfig",
    "RemindersToolConfig",
    "RetryConfig",
    "ShellToolConfig",
    "ShutdownConfig",
    "ThreadsConfig",
    "ToolsConfig",
    "TranscriptionConfig",
    "WebConfig",
    "client_view",
    "is_loopback_host",
    "load_config",
    "require_an_interface",
    "split_address",
]

# What one file sent to the assistant may weigh (a phone's video is larger: it is refused
# with a reply that says so).
MEDIA_BYTES = 25 * 1024 * 1024
# A token that guards a web chat reachable from other machines must not be guessable.
MIN_EXPOSED_TOKEN = 32


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceConfig(_Model):
    """What an endpoint's tokens cost, per million; shown beside the tokens in every view
    of usage (`ganglion.usage`)."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    currency: str = Field("USD", min_length=1, max_length=8)


class EndpointConfig(_Model):
    """One OpenAI-compatible endpoint and the model to ask there."""

    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "llama3.2"
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # The model sees pictures (OpenAI `image_url` parts); off: it is told one came.
    vision: bool = False
    price: PriceConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class LLMTimeouts(_Model):
    connect: float = Field(10.0, gt=0)
    first_token: float = Field(120.0, gt=0)
    idle: float = Field(60.0, gt=0)
    total: float = Field(600.0, gt=0)


class RetryConfig(_Model):
    attempts: int = Field(3, ge=1, le=20)
    initial_backoff: float = Field(1.0, gt=0)
    max_backoff: float = Field(30.0, gt=0)


# A name the owner types after /model: short, one word.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


class NamedModelConfig(EndpointConfig):
    """A model the owner may choose for one conversation (`/model NAME`); its context
    window (None: the main model's `llm.context_window`) and vision go with it."""

    context_window: int | None = Field(None, ge=512)


class LLMConfig(EndpointConfig):
    """The main model, how hard to push it and what to fall back to, and the other
    models a conversation may be switched to."""

    fallbacks: list[EndpointConfig] = Field(default_factory=list)
    models: dict[str, NamedModelConfig] = Field(default_factory=dict)
    max_concurrency: int = Field(8, ge=1, le=256)
    max_tool_rounds: int = Field(8, ge=1, le=100)
    max_tool_calls_per_round: int = Field(16, ge=1, le=256)
    context_window: int = Field(8192, ge=512)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    timeouts: LLMTimeouts = Field(default_factory=LLMTimeouts)
    retries: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, NamedModelConfig]) -> dict[str, NamedModelConfig]:
        for name in value:
            if not MODEL_NAME.match(name) or name.lower() == "default":
                raise ValueError(
                    f"{name!r} cannot name a model: use up to 32 letters, digits, '.', '_' "
                    "or '-' (and not 'default', which /model uses for the main one)"
                )
        return value


class BudgetsConfig(_Model):
    """Tokens per day (in the owner's timezone) that may be spent; null: no limit.
    `daily_tokens` counts every source; the other two cap autonomous work: heartbeat
    reviews, and what runs in the system conversations (system reminders)."""

    daily_tokens: int | None = Field(None, ge=1)
    heartbeat_daily_tokens: int | None = Field(None, ge=1)
    system_daily_tokens: int | None = Field(None, ge=1)


class CompactionConfig(_Model):
    """When and how long conversations are summarised."""

    threshold_tokens: int | None = Field(None, ge=256)
    threshold_fraction: float = Field(0.75, gt=0, le=1)
    keep_recent_messages: int = Field(8, ge=0)
    endpoint: EndpointConfig | None = None


class ThreadsConfig(_Model):
    idle_seconds: float = Field(120.0, gt=0)
    mailbox_size: int = Field(64, ge=1)


class WebConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: SecretStr | None = None
    max_message_bytes: int = Field(64 * 1024, ge=1024)
    max_upload_bytes: int = Field(MEDIA_BYTES, ge=1024)
    max_frames_per_second: float = Field(10.0, gt=0)
    frame_burst: int = Field(30, ge=1)
    allowed_origins: list[str] = Field(default_factory=list)
    metrics_bind: str | None = None
    generate_titles: bool = True

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port], no path")
        return [origin.lower() for origin in value]

    @field_validator("metrics_bind")
    @classmethod
    def _loopback_address(cls, value: str | None) -> str | None:
        if value is not None:
            host, _ = split_address(value)
            if not is_loopback_host(host):
                raise ValueError(
                    f"{host} is not a loopback address: /metrics without the token is only "
                    "served on this machine (127.0.0.1, ::1 or localhost); scrape the web "
                    "chat's /metrics with the token from elsewhere"
                )
        return value

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """`metrics_bind` as (host, port), or None when it is off."""
        return split_address(self.metrics_bind) if self.metrics_bind is not None else None


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 without brackets) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6) as (host, port); ValueError when it is not one."""
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not an address: give host:port, e.g. 127.0.0.1:9464")
    return host, int(port)


GroupRooms = Literal["mentions", "always"]


class MatrixRoomConfig(_Model):
    """What one room does differently from the `matrix:` section (`matrix.rooms`):
    `group_rooms` (None: as `matrix.group_rooms` says)."""

    group_rooms: GroupRooms | None = None


class MatrixConfig(_Model):
    """The Matrix interface. A `matrix:` section that names `homeserver`, `user_id` and
    `access_token` turns it on (`enabled: false` turns it off again); without the section
    it is off. `device_id` has no default: the encryption store belongs to one device.
    `store_dir` (None: `<data_dir>/matrix`) keeps the encryption keys and the sync token;
    `pickle_key` encrypts them at rest (None: generated once and kept, 0600, in the data
    directory as `matrix_pickle_key`). `password` is used only when the homeserver asks
    for it to publish the bot's cross-signing keys; `recovery_key` restores the bot's
    cross-signing identity from secret storage on a new device or after a lost store.
    `verified_devices_only` (on by default) answers, and shares room keys with, only
    devices cross-signed by their user's identity as first seen (pinned); turning it off
    is unsafe: whoever logs in as an allowed user on a new device can then use the bot.
    `group_rooms`: in a room of more than two joined members, answer only what is
    addressed to the bot ("mentions": a mention, a reply to it, its name) or everything
    ("always"); `rooms` sets it per room id."""

    enabled: bool = True
    homeserver: str | None = None
    user_id: str | None = None
    access_token: SecretStr | None = None
    device_id: str | None = None
    allowed_users: list[str] = Field(default_factory=list)
    allow_all_users: bool = False
    allowed_rooms: list[str] = Field(default_factory=list)
    store_dir: Path | None = None
    pickle_key: SecretStr | None = None
    password: SecretStr | None = None
    recovery_key: SecretStr | None = None
    verified_devices_only: bool = True
    max_media_bytes: int = Field(MEDIA_BYTES, ge=1024)
    group_rooms: GroupRooms = "mentions"
    rooms: dict[str, MatrixRoomConfig] = Field(default_factory=dict)

    @field_validator("homeserver")
    @classmethod
    def _homeserver_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local homeserver)")
        return value.rstrip("/") if value is not None else None

    @field_validator("user_id", "allowed_users")
    @classmethod
    def _user_ids(cls, value: str | list[str] | None) -> str | list[str] | None:
        for user_id in [value] if isinstance(value, str) else value or []:
            if not re.fullmatch(r"@[^:\s]+:\S+", user_id):
                raise ValueError(f"{user_id!r} is not a Matrix user id (like @me:example.org)")
        return value

    @field_validator("allowed_rooms", "rooms")
    @classmethod
    def _room_ids(cls, value: list[str] | dict[str, MatrixRoomConfig]) -> Any:
        for room_id in value:
            if not re.fullmatch(r"![^:\s]+:\S+", room_id):
                raise ValueError(
                    f"{room_id!r} is not a room id (like !abc:example.org; Element shows it "
                    "under Room settings > Advanced)"
                )
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> MatrixConfig:
        if not self.enabled:
            return self
        missing = [n for n in ("homeserver", "user_id", "access_token") if not getattr(self, n)]
        if missing:
            raise ValueError(
                "; ".join(f"matrix.{name} is required" for name in missing)
                + " (or set matrix.enabled: false)"
            )
        if not self.device_id:
            raise ValueError("matrix.device_id is required")
        if not self.allowed_users and not self.allow_all_users:
            raise ValueError(
                "matrix.allowed_users is empty: list the Matrix users who may talk to the "
                "assistant (it can run shell commands), e.g. allowed_users: "
                "['@you:example.org'], or set allow_all_users: true to let anyone who can "
                "invite it in"
            )
        return self


def require_an_interface(config: Config) -> None:
    """Raise `ConfigError` when neither the web chat nor Matrix is on: nobody could talk
    to the daemon (`ganglion run` refuses to start)."""
    if not config.web.enabled and not config.matrix.enabled:
        raise ConfigError(
            "no interface is on: the web chat is off (web.enabled: false) and Matrix is not "
            "configured; turn the web chat on or add a matrix section"
        )


class TranscriptionConfig(_Model):
    """Voice to text: an OpenAI-compatible `POST {base_url}/audio/transcriptions`
    endpoint (`ganglion.transcribe`); off while `base_url` is None."""

    base_url: str | None = None
    model: str = "whisper-1"
    api_key: SecretStr | None = None
    language: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value is not None else None


class RemindersConfig(_Model):
    """The reminder actor, and how much the model may schedule: a prompt-injected model
    must not be able to plant reminders that run for ever without the owner knowing."""

    misfire_grace: float = Field(6 * 3600.0, ge=0)
    min_interval: float = Field(60.0, gt=0)
    max_active: int = Field(1000, ge=1)
    max_text_chars: int = Field(4000, ge=1)
    max_per_turn: int = Field(5, ge=1)
    max_per_conversation: int = Field(50, ge=1)
    confirm_recurring: bool = True
    # A cheaper model for the turns reminders start; null: the main one.
    endpoint: EndpointConfig | None = None


class _KnowsOwnedFiles(_Model):
    """A tool section whose tools must keep off Ganglion's own files (`ganglion.owned`),
    as `load_config` found them: one record, shared by the file tools and the shell."""

    _owned: OwnedFiles | None = PrivateAttr(default=None)

    def owned_files(self, data_dir: Path) -> OwnedFiles:
        """Ganglion's own files as `load_config` recorded them; for a section made without
        it (defaults, tests), those of `data_dir` alone."""
        return self._owned if self._owned is not None else OwnedFiles.of(data_dir)

    def knowing(self, owned: OwnedFiles) -> Self:
        """A copy whose tools keep off `owned`."""
        copy = self.model_copy()
        copy._owned = owned
        return copy


class FilesToolConfig(_KnowsOwnedFiles):
    """Where the file tools may read and write; nothing outside these roots, and never
    Ganglion's own files. `max_data_bytes` caps what the files in the data directory may
    add up to (Ganglion's own files, which grow with the conversations, are not counted):
    a write that would take it past is refused."""

    enabled: bool = True
    roots: list[Path] = Field(default_factory=list)  # empty: the data directory
    max_read_bytes: int = Field(256 * 1024, ge=1024)
    max_write_bytes: int = Field(1024 * 1024, ge=1024)
    max_data_bytes: int = Field(1024**3, ge=1024**2)


# A variable name, or a prefix of names ending in *.
_ENV_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")


class ShellToolConfig(_KnowsOwnedFiles):
    """The shell tool: where commands run, for how long, how much output comes back, the
    environment and resource limits they get, and the optional bubblewrap sandbox
    (`writable_paths`, `readonly_paths`, `hidden_paths`, `network` and `tmp_bytes` apply
    to it; `tmp_bytes` caps the sandbox's private /tmp, $HOME and /dev/shm together, see
    `ganglion.tools.shell.tmpfs_sizes`).

    Resource limits (None: the daemon's own) apply to every process a command starts, in
    the sandbox or not. `limit_processes` is the kernel's RLIMIT_NPROC: it counts all the
    processes and threads of the user the daemon runs as, and does not bind root.
    """

    enabled: bool = True
    cwd: Path | None = None  # None: <data_dir>/scripts
    timeout_seconds: float = Field(60.0, gt=0)
    max_timeout_seconds: float = Field(600.0, gt=0)
    max_output_bytes: int = Field(12 * 1024, ge=1024, le=15 * 1024)
    pass_env: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    limit_cpu_seconds: int | None = Field(600, ge=1)
    limit_address_space_bytes: int | None = Field(8 * 1024**3, ge=64 * 1024**2)
    limit_file_size_bytes: int | None = Field(1024**3, ge=1024)
    limit_processes: int | None = Field(4096, ge=16)
    sandbox: Literal["none", "bwrap"] = "none"
    bwrap_path: str = "bwrap"
    writable_paths: list[Path] = Field(default_factory=list)  # empty: the data directory
    readonly_paths: list[Path] = Field(default_factory=list)
    hidden_paths: list[Path] = Field(default_factory=list)
    network: bool = False
    tmp_bytes: int = Field(256 * 1024**2, ge=4 * 1024**2)

    @field_validator("pass_env")
    @classmethod
    def _variable_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not _ENV_PATTERN.fullmatch(pattern):
                raise ValueError(f"{pattern!r} is not a variable name (or a prefix ending in *)")
        return value

    @field_validator("env")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_PATTERN.fullmatch(name) or name.endswith("*"):
                raise ValueError(f"{name!r} is not a variable name")
            if "\0" in text:
                raise ValueError(f"the value of {name} holds a NUL character")
        return value


class MemoryToolConfig(_Model):
    """The memory, goal and skill tools, and how much of the system prompt they may fill.

    MEMORIES.txt goes into every prompt, so it is capped: past `max_memories_bytes`, its
    oldest entries move to MEMORIES.archive.txt. The active goals and the skills index
    share `prompt_goals_and_skills_bytes` (about 3-4 bytes per token): the goals take up
    to half, cut with a marker beyond it; the index lists skills (name and first line) in
    the rest and then says how many more exist."""

    enabled: bool = True
    max_memories_bytes: int = Field(8 * 1024, ge=512)
    max_entry_chars: int = Field(1000, ge=20)
    max_skill_bytes: int = Field(64 * 1024, ge=1024)
    prompt_goals_and_skills_bytes: int = Field(8 * 1024, ge=1024)


class RemindersToolConfig(_Model):
    """The set_reminder, list_reminders and cancel_reminder tools."""

    enabled: bool = True


class MCPServerConfig(_Model):
    """One MCP server: a command started over stdio, or a streamable HTTP URL."""

    enabled: bool = True
    command: list[str] | None = None
    env: dict[str, SecretStr] = Field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    tools: list[str] | None = None  # only these of its tools; None: all
    # Its tools that run without asking the owner (`tools.approval`); the others ask.
    safe_tools: list[str] = Field(default_factory=list)
    call_timeout_seconds: float = Field(60.0, gt=0)
    connect_timeout_seconds: float = Field(30.0, gt=0)
    ping_interval_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (streamable HTTP)")
        if self.command is not None and not (self.command and self.command[0].strip()):
            raise ValueError("command must name the program to run")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        if self.url is None and self.headers:
            raise ValueError("headers only apply to a url server")
        if self.command is None and (self.env or self.cwd):
            raise ValueError("env and cwd only apply to a command server")
        return self


class MCPConfig(_Model):
    """MCP servers whose tools are offered to the model, by short name."""

    servers: dict[str, MCPServerConfig] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _short_names(cls, value: dict[str, MCPServerConfig]) -> dict[str, MCPServerConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
                raise ValueError(
                    f"server name {name!r}: use 1-32 lowercase letters, digits, '-' or '_'"
                )
        return value


Decision = Literal["allow", "ask", "deny"]
# What a tool does, for the approval policy: `tools.approval.default` has one decision
# for each (`ganglion.approval.policy` knows which tool is which).
ToolKind = Literal["read", "write", "shell", "memory", "reminders", "send", "mcp", "other"]
# Commands that run no code from files the model can write and change nothing: listing,
# reading, counting and searching, with any arguments; `pwd` and `date` without (as root,
# `date -s` sets the clock). Not `git` (its config runs commands: core.fsmonitor,
# core.pager, hooks), not `find` (-exec), not an interpreter.
SAFE_COMMANDS = (
    "ls *",
    "cat *",
    "head *",
    "tail *",
    "wc *",
    "grep *",
    "df *",
    "du *",
    "pwd",
    "date",
)


class ApprovalRule(_Model):
    """One rule of `tools.approval.rules`: which calls it matches, and its decision.

    `tool` is a tool name or a glob of them (`mcp__calc__*`). `command` (the shell) is a
    glob over the command line, its words joined by single spaces; a trailing " *" also
    matches nothing more (`ls *` matches `ls` and `ls -la /tmp`). Only a simple command
    can match: one program and its arguments, with no `;`, `&`, `|`, redirection, `$`,
    backquote or newline, and no `NAME=value` first. `path` (the file tools) is a
    directory of the data directory the call's path must be inside (`scripts/`)."""

    tool: str = Field(min_length=1)
    command: str | None = Field(None, min_length=1)
    path: str | None = Field(None, min_length=1)
    decision: Decision = "allow"

    @model_validator(mode="after")
    def _one_kind_of_argument(self) -> ApprovalRule:
        if self.command is not None and self.path is not None:
            raise ValueError("a rule matches a command or a path, not both")
        return self


# The decision by what a tool does when `tools.approval.default` names none.
DEFAULT_DECISIONS: Final[Mapping[ToolKind, Decision]] = {
    "read": "allow",
    "memory": "allow",
    "reminders": "allow",
    "send": "allow",
    "write": "ask",
    "shell": "ask",
    "mcp": "ask",
    "other": "ask",
}


def _default_decisions() -> dict[ToolKind, Decision]:
    return dict(DEFAULT_DECISIONS)


def _default_rules() -> list[ApprovalRule]:
    rules = [ApprovalRule(tool="shell", command=command) for command in SAFE_COMMANDS]
    return [*rules, ApprovalRule(tool="*_file", path="scripts/")]


class ApprovalConfig(_Model):
    """What the assistant may do on its own, what it must ask the owner first, and what
    never: `rules` first (the first that matches decides), then `default` by what the
    tool does. A question is asked in the conversation the call came from; a system turn
    (system reminder, global heartbeat review) asks in `ask_in` (None: the owner's most
    recently active conversation). Unanswered after `timeout_seconds`: denied."""

    default: dict[ToolKind, Decision] = Field(default_factory=_default_decisions)
    rules: list[ApprovalRule] = Field(default_factory=_default_rules)
    ask_in: str | None = None
    timeout_seconds: float = Field(600.0, gt=0)

    @field_validator("ask_in")
    @classmethod
    def _conversation(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_thread_id(value):
            raise ValueError(
                "must be a conversation's thread id (web_…) or a Matrix room id (!…:server)"
            )
        return value


class ToolsConfig(_Model):
    files: FilesToolConfig = Field(default_factory=FilesToolConfig)
    shell: ShellToolConfig = Field(default_factory=ShellToolConfig)
    memory: MemoryToolConfig = Field(default_factory=MemoryToolConfig)
    reminders: RemindersToolConfig = Field(default_factory=RemindersToolConfig)
    mcp: MCPConfig = Field(default_factory=MCPConfig)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)


class HeartbeatConfig(_Model):
    """When goals and conversations are reviewed, and where the global review speaks."""

    enabled: bool = True
    interval_seconds: float = Field(3600.0, ge=60)
    active_window: float = Field(86400.0, gt=0)
    recent_turns: int = Field(3, ge=0, le=50)
    active_hours: str | None = None
    deliver_to: str | None = None
    # A cheaper model for the reviews; null: the main one.
    endpoint: EndpointConfig | None = None

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            ActiveHours.parse(value)  # ValueError: a config error with this field's path
        return value

    @field_validator("deliver_to")
    @classmethod
    def _conversation(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_thread_id(value):
            raise ValueError(
                "must be a conversation's thread id (web_…) or a Matrix room id (!…:server)"
            )
        return value


class ShutdownConfig(_Model):
    grace_seconds: float = Field(10.0, ge=0)


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    dir: Path | None = Path("logs")
    retention_days: int = Field(14, ge=1)
    event_loop_stats: bool = False


class Config(_Model):
    data_dir: Path = Path("data")
    timezone: str | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    compaction: CompactionConfig = Field(default_factory=CompactionConfig)
    threads: ThreadsConfig = Field(default_factory=ThreadsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    matrix: MatrixConfig = Field(default_factory=lambda: MatrixConfig(enabled=False))
    transcription: TranscriptionConfig = Field(default_factory=TranscriptionConfig)
    reminders: RemindersConfig = Field(default_factory=RemindersConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    def endpoints(self) -> list[EndpointConfig]:
        """Every model endpoint the config names: the main one, its fallbacks, the named
        models, and those for compaction, heartbeat reviews and reminders."""
        found: list[EndpointConfig] = [self.llm, *self.llm.fallbacks, *self.llm.models.values()]
        for extra in (self.compaction.endpoint, self.heartbeat.endpoint, self.reminders.endpoint):
            if extra is not None:
                found.append(extra)
        return found

    @field_validator("matrix", mode="before")
    @classmethod
    def _empty_matrix_section(cls, value: Any) -> Any:
        # `matrix:` with every option commented out is no section at all.
        return MatrixConfig(enabled=False) if value is None else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _web_token_off_loopback(self) -> Config:
        if self.web.enabled and not self.web.is_loopback and self.web.token is None:
            raise ValueError(
                f"web.host {self.web.host!r} is not a loopback address: set web.token "
                "(or GANGLION_WEB_TOKEN) before exposing the web chat"
            )
        token = self.web.token.get_secret_value() if self.web.token is not None else ""
        if not self.web.enabled or self.web.is_loopback:
            return self
        make_one = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        if len(token) < MIN_EXPOSED_TOKEN:
            raise ValueError(
                f"web.token must be at least {MIN_EXPOSED_TOKEN} characters when web.host is "
                f"not a loopback address ({make_one})"
            )
        if estimated_bits(token) < MIN_TOKEN_BITS:
            raise ValueError(
                "web.token is too easy to guess for a web chat reachable from other "
                f"machines (it repeats itself or runs in sequence); {make_one}"
            )
        return self


def load_config(
    path: Path | None, *, environ: Mapping[str, str] | None = None
) -> tuple[Config, Path | None]:
    """Load and validate the configuration.

    With `path` None, `./config.yaml` is used when it exists, else the defaults. Returns the
    config with paths made absolute, and the file actually read (None for defaults).

    Error handling: raises `ConfigError` with one readable message for every failure.
    """
    path, raw = read_config_file(path, os.environ if environ is None else environ)
    where = str(path) if path is not None else "built-in defaults"
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(where, exc)) from None
    base = path.resolve().parent if path is not None else Path.cwd()
    return _absolute_paths(config, base, path), path


def client_view(path: Path | None, environ: Mapping[str, str] | None = None) -> ClientView:
    """Where a client finds the daemon `path` configures: read plainly from the file when
    it can be (no validation: the client commands start fast), else from the validated
    configuration.

    Error handling: raises `ConfigError`, as `load_config` does.
    """
    environ = os.environ if environ is None else environ
    view = plain_client_view(path, environ)
    if view is not None:
        return view
    config, _ = load_config(path, environ=environ)
    token = config.web.token
    return ClientView(
        config.data_dir,
        config.web.host,
        config.web.port,
        token.get_secret_value() if token is not None else None,
    )


def _describe(where: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown option"
        elif error["type"] == "missing":
            message = "required option is missing"
        message = message.removeprefix("Value error, ")
        lines.append(f"{where}: {field}: {message}")
    return "\n".join(lines)


def _absolute_paths(config: Config, base: Path, source: Path | None) -> Config:
    logging_dir = (base / config.logging.dir).resolve() if config.logging.dir else None
    data_dir = (base / config.data_dir).resolve()
    store_dir = config.matrix.store_dir
    store_dir = (base / store_dir).resolve() if store_dir is not None else None
    owned = OwnedFiles.of(
        data_dir,
        config_file=source.resolve() if source is not None else None,
        log_dir=logging_dir,
        matrix_store_dir=store_dir,
    )
    files = config.tools.files
    roots = [(base / root).resolve() for root in files.roots]  # empty: the data directory
    shell = config.tools.shell
    shell_paths = {
        "cwd": (base / shell.cwd).resolve() if shell.cwd is not None else None,
        "writable_paths": [(base / path).resolve() for path in shell.writable_paths],
        "readonly_paths": [(base / path).resolve() for path in shell.readonly_paths],
        "hidden_paths": [(base / path).resolve() for path in shell.hidden_paths],
    }
    return config.model_copy(
        update={
            "tools": config.tools.model_copy(
                update={
                    "files": files.model_copy(update={"roots": roots}).knowing(owned),
                    "shell": shell.model_copy(update=shell_paths).knowing(owned),
                    "mcp": _absolute_mcp_paths(config.tools.mcp, base),
                }
            ),
            "data_dir": data_dir,
            "matrix": config.matrix.model_copy(update={"store_dir": store_dir}),
            "logging": config.logging.model_copy(update={"dir": logging_dir}),
        }
    )


def _absolute_mcp_paths(mcp: MCPConfig, base: Path) -> MCPConfig:
    servers = {
        name: server.model_copy(update={"cwd": (base / server.cwd).resolve()})
        if server.cwd is not None
        else server
        for name, server in mcp.servers.items()
    }
    return mcp.model_copy(update={"servers": servers})
