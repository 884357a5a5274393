"""Ganglion's own errors: one tree, and foreign errors converted into it at the edges
(SQLite, httpx, nio, the MCP SDK, the file system).

GanglionError            base; `user_message` is a short sentence safe to show people
├── StartupError         the daemon cannot start as configured; one line, exit 2
│   └── ConfigError      the configuration file is unusable (configfile)
├── StoreError           a store cannot be used, or an operation on it failed (store.sqlite)
│   └── ThreadDeleted    a write into a deleted conversation refused (store.rows)
├── RewindRefused        a turn the owner cannot take back; `reason` says why (store.rows)
├── MigrationError       a database this version cannot use (store.migrations)
├── LLMError             the model could not answer (the tree in llm/errors.py)
├── TurnError            a turn cannot complete (threads.turn)
├── BudgetExceeded       a model call not made: it would pass a budget (usage.meter)
├── ToolError            a tool refused or failed; the message is for the model
│   └── FileAccessError  a file tool (or send_file) refused (tools.files)
├── SafePathError        a file access beneath a directory handle refused (safefs)
├── InboxError           a sent file could not be kept (inbox)
├── ImageError           an image the model cannot be shown (images)
├── TranscriptionError   a voice message could not be transcribed (transcribe)
├── EntryError           an edit of MEMORIES.txt / HEARTBEATS.txt refused (entries)
├── ScheduleError        a reminder refused (reminders.schedule)
├── SandboxError         the configured shell sandbox cannot be used (tools.shell)
├── ConnectionLost       an MCP server went away (tools.mcp)
├── MatrixError          a homeserver failed or refused (the tree in matrix/errors.py)
├── MediaRefused         a room's file that cannot be had; the reply says why (matrix.intake)
├── ServiceUnavailable   a service actor did not answer (services)
├── SubmitError          a message could not be made durable (backend)
│   └── ConversationDeleted  its conversation was deleted (backend)
├── FrameError           a web chat frame refused (web.protocol)
├── UploadError          a web chat upload or attachment refused (web.uploads)
├── PeerError            the daemon's socket is not the owner's (peercheck)
├── ChatError            the terminal client failed (terminal)
└── ForcedStop           a second signal stopped the daemon at once, not drained (app)

Each is defined next to the code that raises it; this module holds the base and the
start-up error, and imports nothing, so any module (the light CLI client too) may use it.
"""

from __future__ import annotations

__all__ = ["GanglionError", "StartupError"]


class GanglionError(Exception):
    """Base of Ganglion's own errors."""

    @property
    def user_message(self) -> str:
        """A short sentence for the owner (a chat, the terminal); never a traceback or a
        secret. By default the message itself."""
        return str(self)


class StartupError(GanglionError):
    """The daemon cannot start as configured; the message says what to fix."""
