"""`ganglion check`: probe every configured part, one line each, with what to do.

The configuration is validated first (by the command line: an unusable one exits 2).
Then, concurrently:

- each model endpoint (`llm`, `llm.fallbacks`, `llm.models`, and the compaction,
  heartbeat and reminders endpoints): the models it lists, one tiny completion, whether
  the configured model exists, whether it accepts `tools`;
- each enabled MCP server: it starts and lists its tools;
- Matrix, when configured: whoami answers with `matrix.user_id` and `matrix.device_id`,
  and the local encryption store holds that device's keys (`ops.matrixcheck`);
- the web chat's address, and `web.metrics_bind`'s, are free (or held by a running
  Ganglion);
- the data directory is writable (or can be created);
- bubblewrap works, when the shell tool's sandbox is on.

Each probe gives `Finding`s: a status ("ok", "warn", "fail", "skip"), one line saying
what was found, and for a failure what to do. The command exits 1 when any failed.
Probes never change anything: the data directory is tested with a file that is removed.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx
import trio

from ganglion.config import Config, EndpointConfig, LLMTimeouts, MCPServerConfig, RetryConfig
from ganglion.llm import LLMClient, LLMContextExceeded, LLMError, LLMRequestRejected
from ganglion.llm.errors import shown_url
from ganglion.ops.findings import Finding
from ganglion.transcript import ChatMessage
from ganglion_actors import unwrap_group

__all__ = ["run_checks"]


PROBE_TIMEOUTS = LLMTimeouts(connect=10, first_token=60, idle=30, total=120)
MCP_TIMEOUT_SECONDS = 30.0
PING = [ChatMessage("user", "Reply with the single word OK.")]
PING_TOOL = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Answers pong. Do not call it now.",
        "parameters": {"type": "object", "properties": {}},
    },
}
TOOLS_HINT = (
    "llama.cpp: start llama-server with --jinja; Ollama: use a model with tool support; "
    "vLLM: --enable-auto-tool-choice --tool-call-parser NAME"
)


Probe = Callable[[], Awaitable[list[Finding]]]


async def run_checks(config: Config) -> list[Finding]:
    """Every probe for `config`, concurrently; the findings in a stable order."""
    probes = _probes(config)
    results: list[list[Finding]] = [[] for _ in probes]

    async def run(index: int, probe: Probe) -> None:
        results[index] = await probe()

    async with trio.open_nursery() as nursery:
        for index, probe in enumerate(probes):
            nursery.start_soon(run, index, probe)
    return [finding for found in results for finding in found]


def _probes(config: Config) -> list[Probe]:
    probes: list[Probe] = [partial(_endpoint, "model", config.llm)]
    for number, fallback in enumerate(config.llm.fallbacks, 1):
        probes.append(partial(_endpoint, f"fallback {number}", fallback))
    for name, named in config.llm.models.items():
        probes.append(partial(_endpoint, f"model {name}", named))
    background = (
        ("compaction", config.compaction.endpoint),
        ("heartbeat", config.heartbeat.endpoint),
        ("reminders", config.reminders.endpoint),
    )
    for what, endpoint in background:
        if endpoint is not None:
            probes.append(partial(_endpoint, f"{what} model", endpoint))
    for name, server in config.tools.mcp.servers.items():
        if server.enabled:
            probes.append(partial(_mcp, name, server, config.logging.dir))
    if config.matrix.enabled:
        probes.append(lambda: _matrix(config))
    if config.web.enabled:
        probes.append(lambda: _web_address(config))
    if config.web.metrics_address is not None:
        probes.append(lambda: _metrics_address(config))
    probes.append(lambda: _data_dir(config.data_dir))
    if config.tools.shell.enabled and config.tools.shell.sandbox == "bwrap":
        probes.append(lambda: _sandbox(config))
    return probes


# -- model endpoints ---------------------------------------------------------------------


async def _endpoint(what: str, endpoint: EndpointConfig) -> list[Finding]:
    where = shown_url(endpoint.base_url)
    retries = RetryConfig(attempts=1)
    async with LLMClient([endpoint], timeouts=PROBE_TIMEOUTS, retries=retries) as client:
        models = await client.list_models()
        try:
            await client.complete(PING, tools=[PING_TOOL], max_tokens=16)
            tools: Finding | None = Finding(f"{what} tools", "ok", "accepts tool definitions")
        except LLMRequestRejected as exc:
            if exc.status != 400 or isinstance(exc, LLMContextExceeded):
                return _refused(what, endpoint, exc)
            tools = Finding(
                f"{what} tools",
                "fail",
                f"{where} refused a request with tools (HTTP 400: {exc.detail[:120]})",
                TOOLS_HINT,
            )
            try:
                await client.complete(PING, max_tokens=16)
            except LLMError as again:
                return [Finding(what, "fail", again.user_message, _fix(again)), tools]
        except LLMError as exc:
            return [Finding(what, "fail", exc.user_message, _fix(exc))]
    listed = f"{len(models)} model(s) listed" if models is not None else "no model list"
    found = [Finding(what, "ok", f"{where} answered ({listed})")]
    found.append(_model_listed(what, endpoint.model, models))
    if tools is not None:
        found.append(tools)
    return found


def _refused(what: str, endpoint: EndpointConfig, exc: LLMRequestRejected) -> list[Finding]:
    if exc.status == 404:
        return [Finding(f"{what} {endpoint.model!r}", "fail", exc.user_message, _fix(exc))]
    return [Finding(what, "fail", exc.user_message, _fix(exc))]


def _model_listed(what: str, model: str, models: tuple[str, ...] | None) -> Finding:
    label = f"{what} {model!r}"
    if models is None:
        return Finding(label, "ok", "answered (the server lists no models to compare)")
    if model in models:
        return Finding(label, "ok", "listed by the server")
    shown = ", ".join(models[:8]) or "none"
    return Finding(
        label,
        "warn",
        f"answered, but the server lists only: {shown}",
        "a server with one model (llama.cpp) answers to any name; others may not",
    )


def _fix(error: LLMError) -> str:
    match error.kind:
        case "unreachable":
            return "start the model server, or set llm.base_url to where it listens"
        case "auth":
            return "set llm.api_key (or GANGLION_LLM_API_KEY) to a key this server accepts"
        case "model_not_found":
            return "set llm.model to one of the server's models (or pull/load it)"
        case "timeout":
            return "the server is slow or stuck: look at its log; raise llm.timeouts if needed"
        case "server_error":
            return "look at the model server's log"
        case _:
            return "look at the daemon's and the model server's logs"


# -- MCP servers, Matrix -------------------------------------------------------------------


async def _mcp(name: str, config: MCPServerConfig, log_dir: Path | None) -> list[Finding]:
    from ganglion.tools import ToolRegistry
    from ganglion.tools.mcp import MCPServer

    what = f"MCP server {name}"
    server = MCPServer(name, config, ToolRegistry(), log_dir=log_dir)
    stop = trio.Event()
    stop.set()  # connect, list the tools, and leave at once
    try:
        with trio.fail_after(min(config.connect_timeout_seconds, MCP_TIMEOUT_SECONDS)):
            await server.run_connection(stop)
    except trio.TooSlowError:
        return [Finding(what, "fail", "did not answer in time", _mcp_fix(config, log_dir))]
    except Exception as exc:  # a protocol edge: any failure of the server is the finding
        cause = unwrap_group(exc)
        reason = f"{type(cause).__name__}: {cause}"[:200]
        return [Finding(what, "fail", f"did not start: {reason}", _mcp_fix(config, log_dir))]
    return [Finding(what, "ok", f"started; {server.tools_listed} tool(s)")]


def _mcp_fix(config: MCPServerConfig, log_dir: Path | None) -> str:
    if config.command is not None:
        where = f" (its stderr is in {log_dir})" if log_dir is not None else ""
        return f"run `{' '.join(config.command)}` by hand to see why{where}"
    return f"check that {config.url} is up and the headers are right"


async def _matrix(config: Config) -> list[Finding]:
    from ganglion.ops.matrixcheck import probe_matrix

    return await probe_matrix(config)


# -- this machine --------------------------------------------------------------------------


async def _web_address(config: Config) -> list[Finding]:
    web = config.web
    return await _address("web chat address", web.host, web.port, "web.port", _is_ganglion)


async def _metrics_address(config: Config) -> list[Finding]:
    address = config.web.metrics_address
    assert address is not None
    host, port = address
    return await _address("metrics address", host, port, "web.metrics_bind", _serves_metrics)


async def _address(
    what: str, host: str, port: int, option: str, is_ours: Callable[[str, int], Awaitable[bool]]
) -> list[Finding]:
    """Whether `host:port` is free to listen on, or held by a running Ganglion
    (`is_ours`)."""
    if port == 0:
        return [Finding(what, "ok", f"{host}: any free port")]
    try:
        await trio.to_thread.run_sync(_try_bind, host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return [Finding(what, "fail", f"cannot listen on {host}:{port}: {exc.strerror}", "")]
        if await is_ours(host, port):
            return [Finding(what, "ok", f"{host}:{port} is served by a running Ganglion")]
        return [
            Finding(
                what,
                "fail",
                f"{host}:{port} is already in use by another program",
                f"stop it, or set {option} to a free port",
            )
        ]
    return [Finding(what, "ok", f"{host}:{port} is free")]


def _try_bind(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


async def _is_ganglion(host: str, port: int) -> bool:
    reply = await _get(host, port, "/readyz")
    return reply is not None and reply.status_code == 200 and reply.text == "ready\n"


async def _serves_metrics(host: str, port: int) -> bool:
    reply = await _get(host, port, "/metrics")
    return reply is not None and reply.status_code == 200 and "ganglion_" in reply.text


async def _get(host: str, port: int, path: str) -> httpx.Response | None:
    """`GET path` from a local listener (a wildcard bind asked on loopback), or None."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    try:
        with trio.move_on_after(5):
            async with httpx.AsyncClient() as http:
                return await http.get(f"http://{shown}:{port}{path}")
    except httpx.HTTPError:
        return None
    return None


async def _data_dir(data_dir: Path) -> list[Finding]:
    what = "data directory"
    problem, existed = await trio.to_thread.run_sync(_unwritable, data_dir)
    if problem is not None:
        return [
            Finding(
                what,
                "fail",
                problem,
                "make it writable by this user (chown/chmod), or set data_dir",
            )
        ]
    state = "writable" if existed else "will be created"
    return [Finding(what, "ok", f"{data_dir} {state}")]


def _unwritable(data_dir: Path) -> tuple[str | None, bool]:
    """Why `data_dir` cannot be used (or None), and whether it exists. Leaves nothing
    behind."""
    existing = data_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory", False
    try:
        fd, name = tempfile.mkstemp(prefix=".ganglion-check-", dir=existing)
    except OSError as exc:
        return f"cannot write in {existing}: {exc.strerror or exc}", existing == data_dir
    os.close(fd)
    os.unlink(name)
    return None, existing == data_dir


async def _sandbox(config: Config) -> list[Finding]:
    from ganglion.tools.shell import SandboxError, check_sandbox

    try:
        await trio.to_thread.run_sync(check_sandbox, config.tools.shell)
    except SandboxError as exc:
        return [Finding("shell sandbox", "fail", str(exc))]
    return [Finding("shell sandbox", "ok", "bubblewrap works here")]
