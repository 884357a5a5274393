"""The whole daemon: a real `ganglion run` process, the scripted fake model on loopback and
web clients over the websocket protocol.

    python benchmarks/bench_daemon.py [--out report.json]

Each figure is the median of `REPEATS` runs. Scenarios (issue 16 item 5):

- concurrency: 50 sessions send one message each at once; the model takes 300 ms per
  reply, streamed in 20 chunks; wall time with `llm.max_concurrency` 64 and 1.
- overhead: 100 sessions x 20 messages against a zero-latency model: turns per second,
  the client's round trip (the model answers at once, so the round trip is the daemon's
  overhead plus loopback HTTP), the daemon's user+sys CPU per turn.
- rt10x20: 10 sessions each sending 20 messages one after the other (zero latency).
- start-up (process start to `/readyz` ready), SIGTERM to exit when idle, RSS when idle.
- the event loop's steps during the overhead run, repeated with `logging.event_loop_stats`
  (the daemon's own trio instrument, read from `/api/status` before and after): the 99th
  percentile and the longest.
- 10,000 conversations of one turn each, then passivated (`threads.idle_seconds` 1 s):
  RSS (one run: it takes a minute).

`headline(results)` gathers the top-level keys of `bench-report.json` from this and the
other benchmarks' results.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.support

from tests.support.fakellm import Reply, open_fake_llm
from tests.support.live import LiveDaemon, open_live_daemon

from ganglion.ops.loop import STEP_BUCKETS_MS, percentile_ms
from ganglion.web import frames

REPEATS = int(os.environ.get("GANGLION_BENCH_REPEATS") or 3)
CHUNKS = 20
MODEL_SECONDS = 0.3
IDLE_THREADS = int(os.environ.get("GANGLION_BENCH_IDLE_THREADS") or 10_000)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _status(live: LiveDaemon) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.base) as http:
        reply = await http.get("/api/status", headers={"Authorization": f"Bearer {live.token}"})
    reply.raise_for_status()
    status: dict[str, Any] = reply.json()
    return status


def _loop_steps(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The event loop's steps between two status readings: their 99th percentile and the
    longest (each as the upper bound of its histogram bucket)."""
    counts = [b - a for a, b in zip(before["loop"]["counts"], after["loop"]["counts"], strict=True)]
    longest = max((i for i, count in enumerate(counts) if count), default=None)
    finite = STEP_BUCKETS_MS[-2]
    return {
        "steps": sum(counts),
        "p99_ms": percentile_ms(counts, 0.99),
        "max_ms": None if longest is None else min(STEP_BUCKETS_MS[longest], finite),
        "max_ms_since_start": after["loop"]["max_ms"],
        "max_task_since_start": after["loop"]["max_task"],
    }


async def _session(
    live: LiveDaemon,
    count: int,
    go: trio.Event,
    round_trips: list[float],
    thread_id: str | None = None,
) -> None:
    """One tab: after `go`, `count` messages one after another, each timed to its reply."""
    thread_id = thread_id or f"web_{secrets.token_hex(8)}"
    async with live.socket() as ws:
        await ws.send_message(frames.hello(thread_id))
        while json.loads(await ws.get_message())["type"] != "history":
            pass
        await go.wait()
        for n in range(count):
            started = time.perf_counter()
            await ws.send_message(frames.send(f"b{n}", f"message {n}"))
            while json.loads(await ws.get_message())["type"] not in ("reply", "failed"):
                pass
            round_trips.append(time.perf_counter() - started)


async def _idle_threads(live: LiveDaemon, threads: int, at_once: int = 50) -> dict[str, Any]:
    """`threads` conversations of one turn each, `at_once` at a time; then, once every
    one has been passivated, the daemon's RSS."""
    go = trio.Event()
    go.set()
    round_trips: list[float] = []
    started = time.perf_counter()
    for first in range(0, threads, at_once):
        async with trio.open_nursery() as nursery:
            for n in range(first, min(threads, first + at_once)):
                nursery.start_soon(_session, live, 1, go, round_trips, f"web_{n:016x}")
    took = time.perf_counter() - started
    with trio.fail_after(60):
        while True:
            status = await _status(live)
            if not status["threads"]["live"]:
                break
            await trio.sleep(0.5)
    return {
        "threads": threads,
        "turns_s": round(took, 1),
        "passivated": status["threads"]["passivated"],
        "rss_mb": round(_rss_mb(live.pid), 1),
    }


async def _load(live: LiveDaemon, sessions: int, count: int) -> dict[str, Any]:
    """`sessions` tabs, connected first, then all sending `count` messages each."""
    round_trips: list[float] = []
    go = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(sessions):
            nursery.start_soon(_session, live, count, go, round_trips)
        await trio.sleep(1.0)  # every tab has said hello
        cpu = _cpu_seconds(live.pid)
        started = time.perf_counter()
        go.set()
    wall = time.perf_counter() - started
    turns = len(round_trips)
    return {
        "wall_s": wall,
        "turns": turns,
        "turns_per_s": turns / wall,
        "p50_ms": _percentile(round_trips, 0.5) * 1000,
        "p99_ms": _percentile(round_trips, 0.99) * 1000,
        "cpu_ms_per_turn": (_cpu_seconds(live.pid) - cpu) * 1000 / turns,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


async def _measure(root: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "repeats": REPEATS}
    streamed = Reply("x" * CHUNKS, chunk_size=1, chunk_delay=MODEL_SECONDS / CHUNKS)
    async with open_fake_llm(responder=lambda body: streamed) as fake:
        for limit in (64, 1):
            runs = []
            for n in range(REPEATS):
                async with open_live_daemon(
                    root / f"c{limit}-{n}", fake.base_url, llm={"max_concurrency": limit}
                ) as live:
                    runs.append(await _load(live, 50, 1))
                    await live.stop()
            results[f"concurrency_max{limit}"] = _median(runs)
    async with open_fake_llm() as fake:  # answers "ok" at once
        overhead, rt, starts, stops, rss, loop = [], [], [], [], [], []
        for n in range(REPEATS):
            async with open_live_daemon(
                root / f"o-{n}", fake.base_url, llm={"max_concurrency": 64}, start=False
            ) as live:
                began = time.perf_counter()
                await live.start()
                starts.append(time.perf_counter() - began)
                await trio.sleep(1.0)
                rss.append(_rss_mb(live.pid))
                overhead.append(await _load(live, 100, 20))
                rt.append(await _load(live, 10, 20))
                await trio.sleep(1.0)
                began = time.perf_counter()
                assert await live.stop() == 0
                stops.append(time.perf_counter() - began)
            # The overhead run again, with the event loop's steps timed (the instrument
            # costs CPU of its own, so the figures above are taken without it).
            async with open_live_daemon(
                root / f"l-{n}",
                fake.base_url,
                llm={"max_concurrency": 64},
                logging={"event_loop_stats": True},
            ) as live:
                before = await _status(live)
                await _load(live, 100, 20)
                loop.append(_loop_steps(before, await _status(live)))
                await live.stop()
        results["overhead_100x20"] = _median(overhead)
        results["rt10x20"] = _median(rt)
        results["startup_ready_s"] = round(statistics.median(starts), 3)
        results["sigterm_exit_s"] = round(statistics.median(stops), 3)
        results["rss_idle_mb"] = round(statistics.median(rss), 1)
        results["loop_steps_overhead_run"] = loop
        results["loop_block_p99_ms"] = statistics.median(run["p99_ms"] for run in loop)
        results["loop_block_max_ms"] = statistics.median(run["max_ms"] for run in loop)
        async with open_live_daemon(
            root / "idle", fake.base_url, threads={"idle_seconds": 1}
        ) as live:
            results["idle_threads"] = await _idle_threads(live, IDLE_THREADS)
            await live.stop()
    return results


def main(directory: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_daemon_", dir=directory) as tmp:
        return trio.run(_measure, Path(tmp))


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The top-level keys of `bench-report.json` from every benchmark's results (None for
    a benchmark that did not run)."""
    daemon = results.get("daemon") or {}
    heartbeat, prompt = results.get("heartbeat") or {}, results.get("prompt") or {}
    store = results.get("conversation_store") or {}
    reminders = results.get("reminders") or {}
    firing, startup = reminders.get("firing") or {}, reminders.get("startup") or {}
    wide, narrow = daemon.get("concurrency_max64", {}), daemon.get("concurrency_max1", {})
    overhead, rt = daemon.get("overhead_100x20", {}), daemon.get("rt10x20", {})
    ratio = narrow["wall_s"] / wide["wall_s"] if wide and narrow else None
    matrix = results.get("matrix") or {}
    synapse_cpu = matrix.get("matrix_synapse_cpu_ms_per_message") or {}
    report: dict[str, Any] = {
        "concurrency_wall_s_max64": wide.get("wall_s"),
        "concurrency_wall_s_max1": narrow.get("wall_s"),
        "concurrency_ratio": round(ratio, 2) if ratio else None,
        "turns_per_s": overhead.get("turns_per_s"),
        "overhead_p50_ms": overhead.get("p50_ms"),
        "overhead_p99_ms": overhead.get("p99_ms"),
        "cpu_ms_per_turn": overhead.get("cpu_ms_per_turn"),
        "rt10x20_p50_ms": rt.get("p50_ms"),
        "rt10x20_p99_ms": rt.get("p99_ms"),
        "append_ms_at_10": (store.get("append_at_10") or {}).get("p50_ms"),
        "append_ms_at_10000": (store.get("append_at_10000") or {}).get("p50_ms"),
        "loop_block_p99_ms": daemon.get("loop_block_p99_ms"),
        "loop_block_max_ms": daemon.get("loop_block_max_ms"),
        "rss_idle_mb": daemon.get("rss_idle_mb"),
        "rss_10k_idle_threads_mb": (daemon.get("idle_threads") or {}).get("rss_mb"),
        "startup_ready_s": daemon.get("startup_ready_s"),
        "sigterm_exit_s": daemon.get("sigterm_exit_s"),
        "reminder_lateness_p50_ms": firing.get("lateness_p50_ms"),
        "reminder_lateness_p99_ms": firing.get("lateness_p99_ms"),
        "reminder_startup_100k_s": (
            startup["startup_ms"] / 1000 if "startup_ms" in startup else None
        ),
        "heartbeat_calls_per_beat_1": heartbeat.get("calls_per_beat_1"),
        "heartbeat_calls_per_beat_100": heartbeat.get("calls_per_beat_100"),
        "heartbeat_prompt_tokens_per_beat_100": heartbeat.get("prompt_tokens_per_beat_100"),
        "first_turn_prompt_tokens": prompt.get("first_turn_prompt_tokens"),
        "matrix_rt_ratio_1room": matrix.get("matrix_rt_ratio_1room"),
        "matrix_rt_ratio_5rooms": matrix.get("matrix_rt_ratio_5rooms"),
        "matrix_cpu_ms_per_message": matrix.get("matrix_cpu_ms_per_message"),
        "matrix_cpu_vs_floor": matrix.get("matrix_cpu_vs_floor"),
        "matrix_synapse_cpu_ms_per_message_bot": synapse_cpu.get("bot"),
        "matrix_synapse_cpu_ms_per_message_floor": synapse_cpu.get("floor"),
        "cpu_count": os.cpu_count(),
    }
    return report


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON report to write")
    args = parser.parse_args()
    report = main()
    text = json.dumps(report, indent=2)
    print(text)
    print(json.dumps(headline({"daemon": report}), indent=2))
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    _cli()
