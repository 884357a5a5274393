"""Per-message append cost of the conversation store, at 10 and at 10,000 messages.

    python benchmarks/bench_store.py --out report.json [--dir DIR]

Appending must cost the same whatever the history length (one INSERT, nothing rewritten
or counted). Each sample is one `ConversationStore.append`, timed end to end (worker
thread hop, transaction, fsync of the WAL under `synchronous=FULL`), in a thread that
already holds 10 or 10,000 messages. The two threads are appended to alternately, so
both see the same disk and cache conditions; `ratio_p50` is p50 at 10,000 over p50 at 10.

The 10,000-message history is written in one bulk transaction beforehand: filling it
through `append` would cost one fsync per message and say nothing more. Put the database
on the disk that will hold `data/` (`--dir`): the fsync is most of the cost.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from ganglion.store import ConversationStore
from ganglion.transcript import ChatMessage

SAMPLES = 200
WARMUP = 20
SIZES = (10, 10_000)
TEXT = "a message of ordinary length, about a sentence or two. " * 3


def _thread(size: int) -> str:
    return f"web_bench_{size}"


def _prefill(path: Path, thread_id: str, count: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO messages (thread_id, epoch, role, content, created_at) "
            "VALUES (?, 0, ?, ?, ?)",
            (
                (thread_id, "user" if n % 2 == 0 else "assistant", TEXT, time.time())
                for n in range(count)
            ),
        )
    conn.close()


def _summary(timings: list[float], existing: int) -> dict[str, Any]:
    timings = sorted(timings)
    return {
        "existing_messages": existing,
        "samples": len(timings),
        "p50_ms": round(statistics.median(timings), 4),
        "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)], 4),
        "mean_ms": round(statistics.fmean(timings), 4),
        "max_ms": round(timings[-1], 4),
    }


async def _measure(path: Path) -> dict[str, Any]:
    store = await ConversationStore.open(path)
    for size in SIZES:
        await store.turns.load_thread(_thread(size), interface="web")
    await store.aclose()
    for size in SIZES:
        await trio.to_thread.run_sync(_prefill, path, _thread(size), size)

    store = await ConversationStore.open(path)
    started = time.perf_counter()
    loaded = await store.turns.load_thread(_thread(SIZES[-1]), interface="web")
    load_ms = (time.perf_counter() - started) * 1000
    assert len(loaded.messages) == SIZES[-1]
    message = ChatMessage("user", TEXT)
    timings: dict[int, list[float]] = {size: [] for size in SIZES}
    for n in range(WARMUP + SAMPLES):
        for size in SIZES:
            started = time.perf_counter()
            await store.turns.append(_thread(size), None, message)
            if n >= WARMUP:
                timings[size].append((time.perf_counter() - started) * 1000)
    await store.aclose()

    small, large = (_summary(timings[size], size + WARMUP) for size in SIZES)
    return {
        "append_at_10": small,
        "append_at_10000": large,
        "ratio_p50": round(large["p50_ms"] / small["p50_ms"], 3),
        "load_thread_10000_ms": round(load_ms, 2),
    }


def main(directory: Path | None = None) -> dict[str, Any]:
    """Run the benchmark in a temporary directory (under `directory` if given)."""
    with tempfile.TemporaryDirectory(prefix="bench_store_", dir=directory) as tmp:
        report = trio.run(_measure, Path(tmp) / "conversation.db")
        report["directory"] = str(Path(tmp).parent)
    return report


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database")
    args = parser.parse_args()
    report = main(args.dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    _cli()
