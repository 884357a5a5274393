"""What a heartbeat beat costs in model calls and prompt tokens.

    python benchmarks/bench_heartbeat.py

The whole daemon in-process with the scripted fake model (which counts every request).
Conversations each had one turn; then beats are triggered one after the other:

- `calls_per_beat_1` / `calls_per_beat_100`: model calls of the first beat with 1 and
  100 active conversations and no goals (each conversation is reviewed once, silently);
- `calls_next_beat_100`: the beat after it, nothing new: no call at all;
- `prompt_tokens_per_beat_100`: the prompt tokens of the first beat with 100
  conversations (Ganglion's byte estimate of each review request: an over-count);
- `prompt_tokens_long_thread`: one review of a conversation with 200 turns (it sees
  only its last `heartbeat.recent_turns`, so this stays flat however long the history).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, open_fake_llm

from ganglion.messages import TriggerHeartbeat, UserMessage
from ganglion.tokens import estimate_tokens


def _is_review(body: dict[str, Any]) -> bool:
    return "Heartbeat review" in str(body["messages"][-1]["content"])


def _answer(body: dict[str, Any]) -> Reply:
    return Reply("HEARTBEAT_OK" if _is_review(body) else "ok")


def _tokens(bodies: list[dict[str, Any]]) -> int:
    return sum(
        estimate_tokens(json.dumps(body["messages"]) + json.dumps(body.get("tools") or []))
        for body in bodies
    )


async def _beat(daemon: Daemon, fake: FakeLLM) -> list[dict[str, Any]]:
    before = len(fake.requests)
    await daemon.services.deps.heartbeat.ask(lambda reply: TriggerHeartbeat("bench", reply))
    return [body for body in fake.requests[before:] if _is_review(body)]


async def _turns(daemon: Daemon, threads: list[str], each: int) -> None:
    async def talk(thread: str) -> None:
        for index in range(each):
            await daemon.services.threads.send(
                thread, UserMessage(thread, "web", f"message {index}: " + "some words " * 30)
            )
        await daemon.collector.final(thread, each)

    async with trio.open_nursery() as nursery:
        for thread in threads:
            nursery.start_soon(talk, thread)


async def _measure(directory: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in (1, 100):
        async with open_fake_llm(responder=_answer) as fake:
            config = daemon_config(directory / f"n{count}", fake.base_url)
            async with open_daemon(config) as daemon:
                threads = [f"web_{n:016x}" for n in range(count)]
                await _turns(daemon, threads, 1)
                first = await _beat(daemon, fake)
                second = await _beat(daemon, fake)
        results[f"calls_per_beat_{count}"] = len(first)
        results[f"calls_next_beat_{count}"] = len(second)
        results[f"prompt_tokens_per_beat_{count}"] = _tokens(first)
    async with open_fake_llm(responder=_answer) as fake:
        config = daemon_config(directory / "long", fake.base_url)
        async with open_daemon(config) as daemon:
            await _turns(daemon, ["web_0000000000000fff"], 200)
            [review] = await _beat(daemon, fake)
    results["prompt_tokens_long_thread"] = _tokens([review])
    results["history_tokens_long_thread"] = estimate_tokens("some words " * 30) * 200
    return results


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_heartbeat_") as tmp:
        return trio.run(_measure, Path(tmp))


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
