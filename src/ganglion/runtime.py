"""What the whole daemon shares, opened once per run and closed after the tree stopped.

`open_services` opens what must outlive every actor (the conversation and reminder
stores, the model clients) and builds what the actors share: `ThreadDeps`, the thread
registry, the interfaces' backend and the stop event. It fails start-up early, with a
clear message, when something cannot work: an unusable data directory, a corrupt
database, a shell sandbox that this machine cannot provide.

How each actor is started lives beside it (`reminders_child`, `heartbeat_child`,
`mcp_children`, `system_log_child`, `web_child`, `matrix_child`); `app.py` composes the tree
from them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import trio

from ganglion.backend import DaemonBackend, DisplayJournal
from ganglion.config import Config
from ganglion.datadir import CONVERSATION_DB, SCHEDULER_DB, ensure_data_dir
from ganglion.delivery import DeliveryRouter
from ganglion.errors import StartupError
from ganglion.heartbeat.actor import HeartbeatStatistics
from ganglion.ids import interface_for
from ganglion.inbox import FileInbox
from ganglion.llm.models import ModelSet
from ganglion.matrix.stats import MatrixStatistics
from ganglion.messages import Announce, Inbound, ReminderRequest, TriggerHeartbeat
from ganglion.private import tighten
from ganglion.prompt import PromptFileCache
from ganglion.redact import Redactor, configured_secrets
from ganglion.reminders.store import ReminderStore
from ganglion.store import Activity, ConversationStore, StoreError
from ganglion.threads.approvals import Approver
from ganglion.threads.deps import SharedPromptFiles, ThreadDeps
from ganglion.threads.registry import thread_registry
from ganglion.tools import ToolRegistry
from ganglion.tools.builtin import builtin_tools
from ganglion.tools.shell import SandboxError, check_sandbox
from ganglion.transcribe import Transcriber
from ganglion.usage import Meter
from ganglion_actors import ActorRef, ActorStopped, MailboxFull, Registry, reserve

__all__ = ["Services", "open_services"]

log = logging.getLogger("ganglion")

ASK_IN_DAYS = 30  # how far back the owner's most recently active conversation is looked for


@dataclass(frozen=True, slots=True, eq=False)
class Services:
    """What the actors of one daemon run share, made by `open_services`.

    Owns nothing it must close: `open_services` closes the stores and the model clients
    once the tree has stopped. `threads` is the registry every conversation is reached
    through (the tree runs it as its first child); `backend` is what the interfaces see
    of the daemon; `stop_requested` is set by `request_stop` (what SIGTERM does) and
    makes the tree drain and stop. `heartbeat` and `matrix` are what those actors
    report of themselves (`ganglion status`, `/metrics`).
    """

    config: Config
    store: ConversationStore
    reminder_store: ReminderStore
    deps: ThreadDeps
    threads: Registry[str, Inbound]
    backend: DaemonBackend
    stop_requested: trio.Event = field(default_factory=trio.Event)
    heartbeat: HeartbeatStatistics = field(default_factory=HeartbeatStatistics)
    matrix: MatrixStatistics = field(default_factory=MatrixStatistics)

    @property
    def router(self) -> DeliveryRouter:
        return self.deps.router

    def request_stop(self) -> None:
        """Ask the daemon to drain and stop (what SIGTERM does)."""
        self.stop_requested.set()


@asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    """Open the store and model clients; close them after the tree has stopped.

    Error handling: raises `StartupError` when the data directory or the store is unusable
    or the configuration asks for something this build cannot do.
    """
    try:
        created = await trio.to_thread.run_sync(ensure_data_dir, config.data_dir)
    except OSError as exc:
        raise StartupError(f"cannot prepare the data directory {config.data_dir}: {exc}") from exc
    for path in created:
        log.info("created %s", path)
    await _make_private(config)
    if config.tools.shell.enabled:
        await _check_shell(config)
    try:
        store = await ConversationStore.open(config.data_dir / CONVERSATION_DB)
        reminder_store = await ReminderStore.open(config.data_dir / SCHEDULER_DB)
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
    timezone = config.timezone or _system_timezone()
    zone = ZoneInfo(timezone)
    models = ModelSet.from_config(config)
    now = partial(datetime.now, zone)
    meter = Meter(store.usage, config.budgets, now)
    # The service actors' references, reserved now and started by the tree (app.py):
    # threads and tools get final references, and no actor registers itself anywhere.
    reminders: ActorRef[ReminderRequest] = reserve("reminders")
    heartbeat: ActorRef[TriggerHeartbeat] = reserve("heartbeat")
    redactor = Redactor(configured_secrets(config))
    http = httpx.AsyncClient()
    inbox = FileInbox.of(config.data_dir, config.tools.files)
    router = DeliveryRouter(journal=DisplayJournal(store.library))
    approver = Approver(
        config, store.approvals, router, now, partial(_latest_conversation, store.activity)
    )
    deps = ThreadDeps(
        config=config,
        turns=store.turns,
        models=models,
        meter=meter,
        router=router,
        prompt_files=SharedPromptFiles(PromptFileCache(config.data_dir, config.tools.memory)),
        tools=ToolRegistry(builtin_tools(config, reminders, redactor, inbox)),
        llm_slots=trio.CapacityLimiter(config.llm.max_concurrency),
        reminders=reminders,
        heartbeat=heartbeat,
        now=now,
        timezone=timezone,
        redactor=redactor,
        inbox=inbox,
        transcriber=_transcriber(config),
        http=http,
        approver=approver,
    )
    try:
        threads = thread_registry(deps)
        meter.announce = partial(_announce, config, store.activity, threads)
        served: dict[str | None, str] = {None: config.llm.model}
        served.update((name, endpoint.model) for name, endpoint in config.llm.models.items())
        backend = DaemonBackend(threads, store, reminder_store, inbox, approver, meter, served)
        yield Services(config, store, reminder_store, deps, threads, backend)
    finally:
        with trio.CancelScope(shield=True):
            await models.aclose()
            await http.aclose()
            await store.aclose()
            await reminder_store.aclose()


async def _announce(
    config: Config, activity: Activity, threads: Registry[str, Inbound], text: str
) -> None:
    """Tell the owner `text` where the heartbeat speaks: `heartbeat.deliver_to`, else the
    most recently active conversation, else only the log."""
    target = config.heartbeat.deliver_to
    if target is None:
        since = time.time() - config.heartbeat.active_window
        active = [
            a
            for a in await activity.thread_activity(since)
            if interface_for(a.thread_id) != "system"
        ]
        latest = max(active, key=lambda a: a.last_activity, default=None)
        target = latest.thread_id if latest is not None else None
    if target is None:
        log.info("no conversation to tell: %s", text)
        return
    try:
        threads.send_nowait(target, Announce(target, text))
    except (MailboxFull, ActorStopped) as exc:
        log.warning("could not tell %s (%r): %s", target, exc, text)


async def _latest_conversation(activity: Activity) -> str | None:
    """The owner's most recently active conversation of the last 30 days (where a system
    turn asks when `tools.approval.ask_in` is not set)."""
    since = time.time() - ASK_IN_DAYS * 86400
    active = [
        a for a in await activity.thread_activity(since) if interface_for(a.thread_id) != "system"
    ]
    latest = max(active, key=lambda a: a.last_activity, default=None)
    return latest.thread_id if latest is not None else None


def _transcriber(config: Config) -> Transcriber | None:
    section = config.transcription
    if section.base_url is None:
        return None
    key = section.api_key.get_secret_value() if section.api_key is not None else None
    return Transcriber(section.base_url, section.model, key, section.language)


async def _make_private(config: Config) -> None:
    """Tighten what an older version, a copy or an editor left readable by others."""
    log_dir = config.logging.dir
    log_files = [*log_dir.glob("ganglion.log*"), *log_dir.glob("mcp-*.log*")] if log_dir else []
    try:
        changed = await trio.to_thread.run_sync(tighten, [config.data_dir], log_files)
    except OSError as exc:
        raise StartupError(f"cannot make {config.data_dir} private: {exc}") from exc
    for path, mode in changed[:20]:
        log.warning("%s was readable by other users (mode %o); now owner-only", path, mode)
    if len(changed) > 20:
        log.warning("… and %d more files made owner-only", len(changed) - 20)


async def _check_shell(config: Config) -> None:
    shell = config.tools.shell
    if shell.cwd is not None and not shell.cwd.is_dir():
        raise StartupError(f"tools.shell.cwd: {shell.cwd} is not a directory")
    try:
        await trio.to_thread.run_sync(check_sandbox, shell)
    except SandboxError as exc:
        raise StartupError(str(exc)) from None
    if shell.sandbox == "bwrap":
        log.info("shell commands run in a bubblewrap sandbox")


def _system_timezone() -> str:
    """The IANA name of the machine's timezone ($TZ, then /etc/localtime), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        parts = Path("/etc/localtime").resolve().parts
    except OSError:
        parts = ()
    if "zoneinfo" in parts:
        candidates.append("/".join(parts[parts.index("zoneinfo") + 1 :]))
    for name in candidates:
        try:
            if name:
                ZoneInfo(name)
                return name
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return "UTC"
