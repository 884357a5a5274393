"""MCP client: the tools of configured MCP servers, offered to the model.

One actor per server (`serve_mcp_server`), started by the root supervisor. It connects
(spawning a stdio server, or opening a streamable HTTP session), lists the server's
tools and registers each in the shared `ToolRegistry` as `mcp__<server>__<tool>`, with
the server's own JSON schema. A tool call is forwarded to the live session.

When the connection ends (the process exits, HTTP fails, a ping goes unanswered), the
server's tools are unregistered at once, calls in flight get a clear tool error, and the
actor ends with `ConnectionLost`; its supervisor starts it again after a jittered
exponential backoff (1 s doubling up to 5 min, back to 1 s after a connection that stayed
up for a while: `mcp_child`). A server that cannot start or keeps failing is logged
in one line per attempt, never fatal: the daemon serves everyone else.

Resource handling: a stdio server runs in its own process group with a minimal
environment (the SDK's safe variables plus the configured `env`), never Ganglion's
secrets; its stderr goes to `logs/mcp-<name>.log` when file logging is on. On stop the
connection is closed normally (stdin closed, then SIGTERM, then SIGKILL), within the
shutdown grace period.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import mcp.types as mcp_types
import trio
from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from ganglion.config import Config, MCPServerConfig
from ganglion.errors import GanglionError
from ganglion.tools.registry import Tool, ToolContext, ToolError, ToolRegistry
from ganglion_actors import Backoff, ChildSpec, Inbox, Restart, unwrap_group

__all__ = [
    "RESTART_BACKOFF",
    "ConnectionLost",
    "MCPServer",
    "mcp_child",
    "mcp_children",
    "mcp_tool_name",
    "serve_mcp_server",
]

log = logging.getLogger(__name__)

# A connection that stayed up two minutes was healthy: the next failure starts over at 1 s.
RESTART_BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=300.0, jitter=0.2, reset_after=120.0)
MAX_DESCRIPTION_CHARS = 1024
NAME_LIMIT = 64


def mcp_tool_name(server: str, tool: str, taken: frozenset[str] = frozenset()) -> str:
    """`mcp__<server>__<tool>`, made safe for function names (`[a-zA-Z0-9_-]`, 64 at
    most) and different from every name in `taken`."""
    base = re.sub(r"[^a-zA-Z0-9_-]", "_", f"mcp__{server}__{tool}")[:NAME_LIMIT]
    name, number = base, 2
    while name in taken:
        suffix = f"_{number}"
        name, number = base[: NAME_LIMIT - len(suffix)] + suffix, number + 1
    return name


def describe_result(result: mcp_types.CallToolResult) -> str:
    """The text of a tool result: text parts as they are, other parts named briefly."""
    parts: list[str] = []
    for item in result.content:
        match item:
            case mcp_types.TextContent(text=text):
                parts.append(text)
            case mcp_types.ImageContent(mimeType=mime):
                parts.append(f"[an image ({mime}) the chat cannot show]")
            case mcp_types.AudioContent(mimeType=mime):
                parts.append(f"[audio ({mime}) the chat cannot play]")
            case mcp_types.EmbeddedResource(resource=mcp_types.TextResourceContents(text=text)):
                parts.append(text)
            case mcp_types.EmbeddedResource(resource=resource):
                parts.append(f"[resource {resource.uri}]")
            case mcp_types.ResourceLink(uri=uri, name=name):
                parts.append(f"[resource link {name}: {uri}]")
            case _:
                parts.append(f"[{type(item).__name__}]")
    if not parts and result.structuredContent is not None:
        parts.append(str(result.structuredContent))
    return "\n".join(parts) or "(no output)"


class ConnectionLost(GanglionError):
    """The server went away; the message says how."""


class MCPServer:
    """One configured server: its live session (if any) and the tools it registered."""

    def __init__(
        self,
        name: str,
        config: MCPServerConfig,
        registry: ToolRegistry,
        *,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.registry = registry
        self.log_dir = log_dir
        self.session: ClientSession | None = None
        self.registered: list[str] = []
        self.attempts = 0  # connections tried
        self.connections = 0  # connections that came up
        self.tools_listed = 0  # tools the server listed when last asked
        self._lost = trio.Event()
        self._lost_reason: str | None = None
        self._tools_changed = trio.Event()
        self._in_flight: set[trio.CancelScope] = set()

    # -- the connection -----------------------------------------------------------------

    async def run_connection(self, stop: trio.Event) -> None:
        """Connect, register the tools, and return when the connection ends or `stop` is
        set. Error handling: raises what made the connection fail."""
        self._lost, self._lost_reason = trio.Event(), None
        self._tools_changed = trio.Event()
        self.attempts += 1
        async with AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport())
            read = await stack.enter_async_context(self._watch(read))
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._on_message)
            )
            with trio.fail_after(self.config.connect_timeout_seconds):
                await session.initialize()
                tools = await self._list_tools(session)
            self.session = session
            self.connections += 1
            try:
                self._register(tools)
                log.info("MCP server %s connected: %d tool(s)", self.name, len(self.registered))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._ping, session)
                    nursery.start_soon(self._refresh_tools, session)
                    await _first_of(stop.wait, self._lost.wait)
                    nursery.cancel_scope.cancel()
            finally:
                self.session = None
                self._unregister()
                # A request whose transport died may never be answered: end those now.
                for scope in self._in_flight:
                    scope.cancel()
        if not stop.is_set():
            raise ConnectionLost(self._lost_reason or "the connection closed")

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        config = self.config
        if config.command is not None:
            params = StdioServerParameters(
                command=config.command[0],
                args=config.command[1:],
                env={k: v.get_secret_value() for k, v in config.env.items()} or None,
                cwd=config.cwd,
            )
            async with (
                self._errlog() as errlog,
                stdio_client(params, errlog=errlog) as (read, write),
            ):
                yield read, write
            return
        assert config.url is not None
        headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        timeout = httpx.Timeout(config.connect_timeout_seconds, read=config.call_timeout_seconds)
        async with (
            httpx.AsyncClient(headers=headers, timeout=timeout) as http,
            streamable_http_client(config.url, http_client=http) as (read, write, _),
        ):
            yield read, write

    @asynccontextmanager
    async def _errlog(self) -> AsyncIterator[TextIO]:
        if self.log_dir is None:
            yield sys.stderr
            return
        path = self.log_dir / f"mcp-{self.name}.log"

        def open_log() -> TextIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("a", encoding="utf-8")

        handle = await trio.to_thread.run_sync(open_log)
        try:
            yield handle
        finally:
            handle.close()

    @asynccontextmanager
    async def _watch(self, read: Any) -> AsyncIterator[Any]:
        """Relay the transport's read stream to the session, noticing when it ends (the
        stdio server exited): that ends the connection at once, not at the next call."""
        send, receive = anyio.create_memory_object_stream[Any](0)

        async def relay() -> None:
            try:
                async with send:
                    async for item in read:
                        await send.send(item)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the session closed its end first
            self._mark_lost("the server closed the connection")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay)
            async with receive:
                yield receive
            nursery.cancel_scope.cancel()

    async def _on_message(self, message: Any) -> None:
        # Called from the session's receive loop, which must not wait on the server
        # itself (a request made here could never get its answer): just take note.
        match message:
            case mcp_types.ServerNotification(root=mcp_types.ToolListChangedNotification()):
                self._tools_changed.set()
            case Exception():
                log.warning("MCP server %s sent something invalid: %s", self.name, message)
            case _:
                pass

    async def _refresh_tools(self, session: ClientSession) -> None:
        while True:
            await self._tools_changed.wait()
            self._tools_changed = trio.Event()
            with trio.fail_after(self.config.connect_timeout_seconds):
                tools = await self._list_tools(session)
            self._register(tools)
            log.info("MCP server %s changed its tools: %d now", self.name, len(self.registered))

    async def _ping(self, session: ClientSession) -> None:
        while True:
            await trio.sleep(self.config.ping_interval_seconds)
            try:
                with trio.fail_after(self.config.connect_timeout_seconds):
                    await session.send_ping()
            except (McpError, trio.TooSlowError, anyio.ClosedResourceError) as exc:
                self._mark_lost(f"it did not answer a ping ({type(exc).__name__})")
                return

    async def _list_tools(self, session: ClientSession) -> list[mcp_types.Tool]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await session.list_tools(
                params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            tools += page.tools
            cursor = page.nextCursor
            if not cursor:
                break
        wanted = self.config.tools
        return [t for t in tools if wanted is None or t.name in wanted]

    # -- the tools ----------------------------------------------------------------------

    def _register(self, tools: list[mcp_types.Tool]) -> None:
        self._unregister()
        self.tools_listed = len(tools)
        for item in tools:
            name = mcp_tool_name(self.name, item.name, self.registry.names)
            description = (item.description or item.title or item.name).strip()
            self.registry.register(
                Tool(
                    name=name,
                    description=f"[MCP server {self.name}] {description}"[:MAX_DESCRIPTION_CHARS],
                    arguments=None,
                    fn=self._caller(item.name),
                    parameters=item.inputSchema,
                )
            )
            self.registered.append(name)

    def _unregister(self) -> None:
        for name in self.registered:
            self.registry.unregister(name)
        self.registered = []

    def _caller(self, tool: str) -> Callable[..., Any]:
        async def call(ctx: ToolContext, **arguments: Any) -> str:
            return await self.call(tool, arguments)

        return call

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> str:
        """Call `tool` on the live session. Error handling: every failure is a
        `ToolError` whose message says what happened."""
        session = self.session
        if session is None:
            raise ToolError(f"the MCP server {self.name!r} is not connected; it is restarting")
        timeout = self.config.call_timeout_seconds
        stopped = ToolError(
            f"the MCP server {self.name!r} stopped during the call; it is being restarted, "
            "so the call may be tried again shortly"
        )
        connection = trio.CancelScope()
        self._in_flight.add(connection)
        try:
            with connection, trio.fail_after(timeout):
                result = await session.call_tool(
                    tool, dict(arguments), read_timeout_seconds=timedelta(seconds=timeout + 5)
                )
        except trio.TooSlowError:
            raise ToolError(
                f"the MCP server {self.name!r} did not answer within {timeout:g} s"
            ) from None
        except (McpError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            if self.session is not session or self._lost.is_set() or _is_closed(exc):
                self._mark_lost("it stopped during a call")
                raise stopped from None
            raise ToolError(f"the MCP server {self.name!r} refused the call: {exc}") from None
        finally:
            self._in_flight.discard(connection)
        if connection.cancelled_caught:
            raise stopped
        text = describe_result(result)
        if result.isError:
            raise ToolError(text)
        return text


def _is_closed(exc: Exception) -> bool:
    if isinstance(exc, McpError):
        return exc.error.code == mcp_types.CONNECTION_CLOSED
    return True


async def _first_of(*waits: Callable[[], Any]) -> None:
    """Return as soon as one of `waits` returns."""
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def run(wait: Callable[[], Any] = wait) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)


async def serve_mcp_server(
    server: MCPServer,
    inbox: Inbox[Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The actor for one MCP server: keep one connection up until the mailbox closes.

    It takes no messages; the supervisor closing its mailbox is the signal to stop.
    Ready at once, so a slow or broken server never delays start-up. A connection that
    ends or cannot be made ends this incarnation with `ConnectionLost` saying why; run it
    with `mcp_child`, whose supervisor restarts it after `RESTART_BACKOFF`.
    """
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_connect, server, stop)
        task_status.started()
        async for _ in inbox:
            pass
        stop.set()


def mcp_children(config: Config, tools: ToolRegistry) -> list[ChildSpec[Any]]:
    """The root supervisor's children for the enabled MCP servers, in configuration
    order, each registering its tools in `tools`."""
    return [
        mcp_child(MCPServer(name, server, tools, log_dir=config.logging.dir))
        for name, server in config.tools.mcp.servers.items()
        if server.enabled
    ]


def mcp_child(server: MCPServer) -> ChildSpec[Any]:
    """How the root supervisor runs `server`: restarted with backoff for as long as it
    fails, never escalating (a broken server must not stop the daemon)."""
    return ChildSpec(
        f"mcp:{server.name}",
        partial(serve_mcp_server, server),
        restart=Restart.TRANSIENT,
        backoff=RESTART_BACKOFF,
        escalates=False,
        expected=(ConnectionLost,),
    )


async def _connect(server: MCPServer, stop: trio.Event) -> None:
    try:
        await server.run_connection(stop)
    except Exception as exc:  # the protocol edge of one server
        cause = unwrap_group(exc)
        if stop.is_set():
            return
        if isinstance(cause, ConnectionLost):
            raise cause from None
        if isinstance(cause, EXPECTED_FAILURES):
            raise ConnectionLost(_reason(cause)) from cause
        raise


EXPECTED_FAILURES = (ConnectionLost, OSError, trio.TooSlowError, McpError, httpx.HTTPError)


def _reason(exc: BaseException) -> str:
    match exc:
        case ConnectionLost():
            return f"connection lost ({exc})"
        case trio.TooSlowError():
            return "it did not finish connecting in time"
        case OSError():
            return f"cannot start it: {exc.strerror or exc}"
        case McpError():
            return f"protocol error: {exc.error.message}"
        case httpx.HTTPError():
            return f"HTTP error: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"
