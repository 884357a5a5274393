"""The daemon's shared services, and the actor functions the supervision tree starts.

`open_services` opens what must outlive every actor (the conversation store, the model
clients) and closes it after the tree has stopped. It fails start-up early, with a clear
message, when something cannot work: an unusable data directory, a corrupt database.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trio

from ganglion.backend import DaemonBackend
from ganglion.config import Config
from ganglion.datadir import (
    CONVERSATION_DB,
    GOALS_FILE,
    SCHEDULER_DB,
    WEB_TOKEN_FILE,
    ensure_data_dir,
)
from ganglion.delivery import DeliveryRouter
from ganglion.errors import StartupError
from ganglion.heartbeat import serve_heartbeat
from ganglion.llm import LLMClient
from ganglion.matrix import serve_matrix
from ganglion.messages import (
    HeartbeatReview,
    Inbound,
    Notice,
    Outbound,
    ReminderDue,
    ReminderRequest,
    TriggerHeartbeat,
    Wake,
)
from ganglion.private import tighten
from ganglion.prompt import PromptFileCache
from ganglion.redact import Redactor, configured_secrets
from ganglion.reminders import ReminderActor, ReminderStore
from ganglion.safefs import SafePathError
from ganglion.store import ConversationStore, StoreError
from ganglion.systemlog import serve_system_log
from ganglion.threads import SharedPromptFiles, ThreadDeps, serve_thread
from ganglion.threads.ids import interface_for
from ganglion.tools import Tool, ToolRegistry
from ganglion.tools.files import file_tools
from ganglion.tools.mcp import MCPServer, mcp_child_spec
from ganglion.tools.memory import memory_tools
from ganglion.tools.scheduling import reminder_tools
from ganglion.tools.shell import SandboxError, check_sandbox, shell_tools
from ganglion.web import WebState, load_or_create_token, serve_web
from ganglion_actors import (
    ActorFn,
    ActorRef,
    ActorStopped,
    Backoff,
    ChildSpec,
    Inbox,
    Registry,
    Restart,
    reserve,
)

__all__ = ["Services", "open_services"]

log = logging.getLogger("ganglion")

# Interfaces fail for outside reasons (a port, a homeserver): retried up to once a minute.
INTERFACE_BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.2, reset_after=60.0)


class Services:
    """Everything the actors share; built once per daemon run."""

    def __init__(
        self,
        config: Config,
        store: ConversationStore,
        reminder_store: ReminderStore,
        deps: ThreadDeps,
    ) -> None:
        self.config = config
        self.store = store
        self.reminder_store = reminder_store
        self.deps = deps
        self.router = deps.router
        self.web_state = WebState()
        self.stop_requested = trio.Event()
        self.mcp_servers = [
            MCPServer(name, server, deps.tools, log_dir=config.logging.dir)
            for name, server in config.tools.mcp.servers.items()
            if server.enabled
        ]
        self.threads: Registry[str, Inbound] = Registry(
            "threads",
            lambda thread_id: partial(serve_thread, deps, thread_id),
            idle_timeout=config.threads.idle_seconds,
            mailbox_size=config.threads.mailbox_size,
        )
        self.backend = DaemonBackend(self.threads, store)

    async def serve_reminders(
        self,
        inbox: Inbox[ReminderRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def deliver(due: ReminderDue) -> None:
            # Returns once the thread has the reminder's turn on disk (see ReminderDue).
            await self.threads.ask(due.thread_id, lambda accepted: replace(due, accepted=accepted))

        async def notify(thread_id: str, text: str) -> None:
            await self.router.deliver(Notice(thread_id, text))

        actor = ReminderActor(
            self.reminder_store,
            self.config.reminders,
            self.deps.timezone,
            deliver,
            notify,
            missing_turns=self.store.missing_turns,
        )
        await actor.serve(inbox, task_status=task_status)

    async def serve_heartbeat(
        self,
        inbox: Inbox[TriggerHeartbeat],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def send_review(review: HeartbeatReview) -> None:
            await self.threads.send(review.thread_id, review)

        await serve_heartbeat(
            self.config.heartbeat,
            self.config.data_dir / GOALS_FILE,
            send_review,
            inbox,
            task_status=task_status,
        )

    def service_actors(self) -> list[ChildSpec[Any]]:
        """The thread registry, then the reminder and heartbeat actors on the references
        the threads already hold."""
        return [
            ChildSpec("threads", self.threads.serve),
            ChildSpec("reminders", self.serve_reminders, ref=self.deps.reminders),
            ChildSpec("heartbeat", self.serve_heartbeat, ref=self.deps.heartbeat),
        ]

    def tool_servers(self) -> list[ChildSpec[Any]]:
        """The MCP server actors to start: one per enabled server."""
        return [mcp_child_spec(server) for server in self.mcp_servers]

    def interfaces(self) -> list[ChildSpec[Any]]:
        """The interface actors to start, in order. Each is restarted with backoff for as
        long as it fails and never escalates: one broken interface (a homeserver that
        went away) never stops the others, the conversations or the reminders."""
        found: list[tuple[str, ActorFn]] = [
            ("system", partial(serve_system_log, self.router, self.backend))
        ]
        if self.config.web.enabled:
            found.append(("web", self._serve_web))
        if self.config.matrix.enabled:
            found.append(("matrix", self._serve_matrix))
        return [
            ChildSpec(
                name, run, restart=Restart.TRANSIENT, backoff=INTERFACE_BACKOFF, escalates=False
            )
            for name, run in found
        ]

    async def resume_cut_off_turns(self) -> int:
        """Wake every thread that has a turn cut off by the last stop, so it is answered."""
        thread_ids = await self.store.threads_with_pending_turns()
        for thread_id in thread_ids:
            try:
                await self.threads.send(thread_id, Wake(thread_id))
            except ActorStopped:
                break
        return len(thread_ids)

    def request_stop(self) -> None:
        """Ask the daemon to drain and stop (what SIGTERM does)."""
        self.stop_requested.set()

    def begin_drain(self) -> None:
        self.web_state.draining = True

    async def _serve_web(
        self,
        inbox: Inbox[Outbound],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            token = await trio.to_thread.run_sync(
                load_or_create_token, self.config.data_dir, self.config.web.token
            )
        except SafePathError as exc:
            raise StartupError(
                f"the web token file is not usable ({exc}); remove "
                f"{self.config.data_dir / WEB_TOKEN_FILE} and start again"
            ) from None
        self.deps.redactor.add(token)
        with self.router.route("web", lambda thread: interface_for(thread) == "web", inbox.ref):
            await serve_web(
                self.config.web,
                self.config.shutdown.grace_seconds,
                self.web_state,
                self.backend,
                token,
                inbox,
                task_status=task_status,
            )

    async def _serve_matrix(
        self,
        inbox: Inbox[Outbound],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with self.router.route(
            "matrix", lambda thread: interface_for(thread) == "matrix", inbox.ref
        ):
            await serve_matrix(
                self.config.matrix,
                self.config.data_dir,
                self.backend,
                inbox,
                task_status=task_status,
            )


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
    llm = LLMClient.from_config(config.llm)
    compaction_endpoint = config.compaction.endpoint
    compaction_llm = (
        LLMClient([compaction_endpoint], timeouts=config.llm.timeouts, retries=config.llm.retries)
        if compaction_endpoint is not None
        else llm
    )
    # The service actors' references, reserved now and started by the tree (app.py):
    # threads and tools get final references, and no actor registers itself anywhere.
    reminders: ActorRef[ReminderRequest] = reserve("reminders")
    heartbeat: ActorRef[TriggerHeartbeat] = reserve("heartbeat")
    redactor = Redactor(configured_secrets(config))
    deps = ThreadDeps(
        config=config,
        store=store,
        llm=llm,
        compaction_llm=compaction_llm,
        router=DeliveryRouter(),
        prompt_files=SharedPromptFiles(PromptFileCache(config.data_dir, config.tools.memory)),
        tools=ToolRegistry(_builtin_tools(config, reminders, redactor)),
        llm_slots=trio.CapacityLimiter(config.llm.max_concurrency),
        reminders=reminders,
        heartbeat=heartbeat,
        now=lambda: datetime.now(zone),
        timezone=timezone,
        redactor=redactor,
    )
    try:
        yield Services(config, store, reminder_store, deps)
    finally:
        with trio.CancelScope(shield=True):
            if compaction_llm is not llm:
                await compaction_llm.aclose()
            await llm.aclose()
            await store.aclose()
            await reminder_store.aclose()


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


def _builtin_tools(
    config: Config, reminders: ActorRef[ReminderRequest], redactor: Redactor
) -> list[Tool]:
    """The tools the configuration enables."""
    tools = config.tools
    found: list[Tool] = []
    if tools.files.enabled:
        found += file_tools(tools.files, config.data_dir)
    if tools.shell.enabled:
        found += shell_tools(tools.shell, config.data_dir, lambda: redactor.secrets)
    if tools.memory.enabled:
        found += memory_tools(tools.memory, config.data_dir)
    if tools.reminders.enabled:
        found += reminder_tools(reminders)
    return found


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
