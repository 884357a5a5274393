"""Per-message append cost of the conversation store, at 10 and at 10,000 messages.

Appending must cost the same whatever the history length (one INSERT, nothing
rewritten). Each sample is one `ConversationStore.append`, timed end to end through the
worker thread, in a thread that already holds N messages.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from ganglion.chat import ChatMessage
from ganglion.store import ConversationStore

SAMPLES = 300
WARMUP = 50


async def _measure(store: ConversationStore, thread_id: str, existing: int) -> dict[str, Any]:
    await store.load_thread(thread_id, interface="web")
    filler = ChatMessage("user", "a message of ordinary length, about a sentence or two. " * 3)
    for _ in range(existing):
        await store.append(thread_id, None, filler)
    for _ in range(WARMUP):  # page cache and statement cache warm, as in a running daemon
        await store.append(thread_id, None, filler)
    timings = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        await store.append(thread_id, None, filler)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "existing_messages": existing + WARMUP,
        "samples": SAMPLES,
        "p50_ms": round(statistics.median(timings), 4),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 4),
        "mean_ms": round(statistics.fmean(timings), 4),
    }


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await ConversationStore.open(Path(tmp) / "conversation.db")
        small = await _measure(store, "web_small", 10)
        large = await _measure(store, "web_large", 10_000)
        await store.aclose()
    return {
        "append_at_10": small,
        "append_at_10000": large,
        "ratio_p50": round(large["p50_ms"] / small["p50_ms"], 3),
    }


def main() -> dict[str, Any]:
    return trio.run(run)
