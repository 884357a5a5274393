"""What a tool call costs, end to end through `ToolRegistry.call` (argument validation,
the tool, result shaping), for the tools whose cost is not the model's.

    python benchmarks/bench_tools.py

- `shell_true`: `shell` running `true`: process-group spawn, pipe, reap.
- `shell_capped`: `shell` printing 100 MB: how fast output is drained while only
  `max_output_bytes` are kept (reported as throughput).
- `read_file`: `read_file` of a 4 KiB file (path confinement + worker thread).
- `remember`: `remember` into MEMORIES.txt (lock, worker thread, atomic replace + fsync).
- `mcp_stdio_call`: an `add` call to the suite's MCP server over stdio, once connected.
- `schemas`: `ToolRegistry.schemas()` for the built-in tools (cached after the first).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from ganglion.config import Config, MCPServerConfig
from ganglion.redact import Redactor
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.builtin import builtin_tools
from ganglion.tools.mcp import MCPServer
from ganglion.transcript import ToolCall
from ganglion_actors import reserve

CTX = ToolContext(thread_id="web_bench0000000000", turn_id="bench", interface="web")
SERVER = Path(__file__).resolve().parent.parent / "tests" / "support" / "mcpserver.py"


def _summary(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    return {
        "samples": len(samples),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def _timed(run: Callable[[], Awaitable[Any]], count: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        await run()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - started)
    return samples


async def _call(tools: ToolRegistry, name: str, **arguments: Any) -> str:
    result = await tools.call(ToolCall("b", name, json.dumps(arguments)), CTX)
    if not result.ok:
        raise RuntimeError(f"{name} failed: {result.content[:200]}")
    return result.content


async def _bench(data: Path) -> dict[str, Any]:
    (data / "scripts").mkdir()
    (data / "skills").mkdir()
    (data / "note.txt").write_text("x" * 4096)
    config = Config(data_dir=data)
    tools = ToolRegistry(builtin_tools(config, reserve("reminders"), Redactor()))
    results: dict[str, Any] = {}
    results["shell_true"] = _summary(
        await _timed(lambda: _call(tools, "shell", command="true"), 100)
    )
    big = "head -c 100000000 /dev/zero"
    started = time.perf_counter()
    await _call(tools, "shell", command=big)
    seconds = time.perf_counter() - started
    results["shell_capped"] = {
        "bytes": 100_000_000,
        "seconds": round(seconds, 3),
        "mb_per_s": round(100 / seconds, 1),
    }
    results["read_file"] = _summary(
        await _timed(lambda: _call(tools, "read_file", path="note.txt"), 200)
    )
    counter = iter(range(10**9))
    results["remember"] = _summary(
        await _timed(lambda: _call(tools, "remember", fact=f"fact {next(counter)}"), 100)
    )
    tools.schemas()
    started = time.perf_counter()
    for _ in range(1000):
        tools.schemas()
    results["schemas_cached_us"] = round((time.perf_counter() - started) * 1000, 3)
    results["mcp_stdio_call"] = await _bench_mcp(tools)
    return results


async def _bench_mcp(tools: ToolRegistry) -> dict[str, Any]:
    config = MCPServerConfig(command=[sys.executable, str(SERVER), "stdio"])
    server = MCPServer("bench", config, tools)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run_connection, stop)
        with trio.fail_after(60):
            while "mcp__bench__add" not in tools.names:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.01)
        samples = await _timed(lambda: _call(tools, "mcp__bench__add", a=1, b=2), 200)
        stop.set()
    return _summary(samples)


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        return trio.run(_bench, Path(directory))


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
