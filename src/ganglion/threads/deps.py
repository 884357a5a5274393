"""What a thread actor needs from the rest of the daemon, passed in explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
import trio

from ganglion.config import Config
from ganglion.delivery import DeliveryRouter
from ganglion.inbox import FileInbox
from ganglion.llm.models import ModelSet
from ganglion.messages import ReminderRequest, TriggerHeartbeat
from ganglion.prompt import PromptFileCache, PromptFiles
from ganglion.redact import Redactor
from ganglion.store import Turns
from ganglion.threads.approvals import Approver
from ganglion.tools import ToolRegistry
from ganglion.transcribe import Transcriber
from ganglion.usage import Meter
from ganglion_actors import ActorRef

__all__ = ["SharedPromptFiles", "ThreadDeps"]


class SharedPromptFiles:
    """The prompt files, shared by every thread; re-read only when they change.

    Reading happens in a worker thread, one reader at a time, so the event loop never
    waits on the disk and the cache is never updated concurrently.
    """

    def __init__(self, cache: PromptFileCache) -> None:
        self._cache = cache
        self._limiter = trio.CapacityLimiter(1)

    async def load(self) -> PromptFiles:
        return await trio.to_thread.run_sync(self._cache.load, limiter=self._limiter)


@dataclass(frozen=True, slots=True)
class ThreadDeps:
    """Everything a thread actor uses that it does not own, shared by all threads and
    built once per daemon run: the validated config, the conversation store's turns, the model
    clients (`models`), the meter every call is checked and counted by, and the limiter on
    concurrent model calls, the delivery router, the prompt
    files, the tools, the service actors' references (reserved before the tree starts
    them, so they are final), the clock and the redactor; the inbox (what the owner
    sent), the transcription endpoint (None: not configured) and the HTTP client it is
    asked with; the approver, which asks the owner before a call the policy does not
    allow on its own."""

    config: Config
    turns: Turns
    models: ModelSet
    meter: Meter
    router: DeliveryRouter
    prompt_files: SharedPromptFiles
    tools: ToolRegistry
    llm_slots: trio.CapacityLimiter
    reminders: ActorRef[ReminderRequest]
    heartbeat: ActorRef[TriggerHeartbeat]
    now: Callable[[], datetime]
    timezone: str
    redactor: Redactor
    inbox: FileInbox
    transcriber: Transcriber | None
    http: httpx.AsyncClient
    approver: Approver
