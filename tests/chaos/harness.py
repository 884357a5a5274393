"""The chaos run's parts: the scripted model, the web clients and the moments to kill at.

Every message a client sends carries its own id as `#<id>` in its text, and the model
answers `answer to #<id>`, so a reply, whether it arrives live or in the history after a
reconnect, names the message it answers. The text also says what the model does with it:
`[tool]` makes it run the shell tool (`sleep 1`) before answering, `[slow]` delays the
first byte, `[long]` pads the message so that the thread soon needs compaction.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError

from ganglion.web import frames
from tests.support.fakellm import Reply, Step
from tests.support.live import LiveDaemon

__all__ = ["KINDS", "ChaosClient", "ChaosModel", "Moments"]

# What a kill waits for before it strikes; "any" strikes at a random moment.
KINDS = ("stream", "tool", "reminder", "compaction", "any")

TOKEN = re.compile(r"#(m[0-9a-f]+-\d+)")
SUMMARY_MARK = "running summary"
REMINDER_MARK = "A reminder you scheduled earlier is due now"
PADDING = " ".join(["the quick brown fox jumps over the lazy dog"] * 60)  # ~600 tokens


class Moments:
    """Events the kill controller waits on, set as the daemon is seen doing each kind
    of work (by the clients for streams and tools, by the model for the rest)."""

    def __init__(self) -> None:
        self.events = {kind: trio.Event() for kind in KINDS}

    def saw(self, kind: str) -> None:
        self.events[kind].set()

    def rearm(self, kind: str) -> trio.Event:
        self.events[kind] = trio.Event()
        return self.events[kind]


class ChaosModel:
    """The fake model's responder: streamed answers, shell calls, slow reminder turns and
    summaries (each slow enough that a kill can land inside it)."""

    def __init__(self, moments: Moments) -> None:
        self.moments = moments
        self.summaries = 0

    def __call__(self, body: dict[str, Any]) -> Step:
        messages: list[dict[str, Any]] = body["messages"]
        if SUMMARY_MARK in (messages[0].get("content") or ""):
            self.summaries += 1
            self.moments.saw("compaction")
            return Reply("Summary: the person sent numbered test messages.", latency=1.5)
        user = next(m for m in reversed(messages) if m["role"] == "user")
        text = user.get("content") or ""
        if REMINDER_MARK in text:
            self.moments.saw("reminder")
            return Reply("Reminder handled.", latency=1.0, chunk_delay=0.05)
        found = TOKEN.search(text)
        answer = f"answer to #{found.group(1)}" if found else "ok"
        if "[tool]" in text and messages[-1]["role"] == "user":
            return Reply(tool_calls=(("shell", json.dumps({"command": "sleep 1"})),))
        latency = 2.0 if "[slow]" in text else 0.05
        return Reply(f"{answer}. " + "streamed " * 6, latency=latency, chunk_delay=0.04)


@dataclass
class ChaosClient:
    """One browser tab: sends its messages one after another over the web chat and,
    whenever the socket breaks, reconnects, says hello with its thread id and reads the
    history, as the web UI does. A message not yet answered is sent again with the same id
    (the daemon stores it once). Now and then the tab closes right after sending, so that
    its answer reaches it in the history of the next connection."""

    number: int
    rng: random.Random
    thread_id: str = ""
    sent: list[str] = field(default_factory=list)  # message ids, in order
    reply_frames: Counter[str] = field(default_factory=Counter)
    failed_frames: Counter[str] = field(default_factory=Counter)
    in_history: set[str] = field(default_factory=set)
    refusals: Counter[str] = field(default_factory=Counter)  # error codes that named a send
    connections: int = 0
    pending: str | None = None

    def __post_init__(self) -> None:
        self.thread_id = f"web_{self.rng.getrandbits(64):016x}"

    def answered(self, message_id: str) -> bool:
        return bool(self.reply_frames[message_id] or self.failed_frames[message_id]) or (
            message_id in self.in_history
        )

    def _next_message(self) -> str:
        message_id = f"m{self.number:02x}-{len(self.sent)}"
        self.sent.append(message_id)
        return message_id

    def _text(self, message_id: str) -> str:
        roll = random.Random(message_id).random()  # the same text on every resend
        kind = "[tool]" if roll < 0.2 else "[slow]" if roll < 0.3 else ""
        kind += " [long] " + PADDING if 0.3 <= roll < 0.45 else ""
        return f"message #{message_id} {kind}"

    async def run(self, live: LiveDaemon, moments: Moments, stop: trio.Event) -> None:
        """Talk until `stop` is set and the last message is answered."""
        while True:
            try:
                async with live.socket() as ws:
                    self.connections += 1
                    if await self._converse(ws, moments, stop):
                        return
            except (ConnectionClosed, HandshakeError, OSError, trio.BrokenResourceError):
                pass
            await trio.sleep(0.1 + self.rng.random() * 0.5)

    async def _converse(self, ws: Any, moments: Moments, stop: trio.Event) -> bool:
        await ws.send_message(frames.hello(self.thread_id))
        while (frame := json.loads(await ws.get_message()))["type"] != "history":
            if frame["type"] == "error":  # the hello was refused: the page would try again
                self.refusals[f"hello {frame['code']}"] += 1
                await trio.sleep(0.2)
                return False
        for item in frame["messages"]:
            if item["role"] == "assistant" and not item.get("tool_calls"):
                self.in_history.update(TOKEN.findall(item.get("content") or ""))
        while True:
            if self.pending is None or self.answered(self.pending):
                if stop.is_set():
                    return True
                await trio.sleep(self.rng.random() * 0.5)
                self.pending = self._next_message()
            await ws.send_message(frames.send(self.pending, self._text(self.pending)))
            if self.rng.random() < 0.1:  # the tab closes; its answer waits in the outbox
                await trio.sleep(self.rng.random() * 0.2)
                return False
            await self._wait_for_answer(ws, moments)

    async def _wait_for_answer(self, ws: Any, moments: Moments) -> None:
        prefix = f"{self.thread_id}/"
        while self.pending is not None and not self.answered(self.pending):
            frame = json.loads(await ws.get_message())
            match frame["type"]:
                case "delta":
                    moments.saw("stream")
                case "tool" if frame["phase"] == "start":
                    moments.saw("tool")
                case "reply" | "failed" if frame["turn_id"].startswith(prefix):
                    message_id = frame["turn_id"][len(prefix) :]
                    counts = self.reply_frames if frame["type"] == "reply" else self.failed_frames
                    counts[message_id] += 1
                case "error" if frame.get("id") == self.pending:
                    # Refused (not stored, rate-limited, …): the page shows it failed, and
                    # the owner's Retry sends it again, as this does.
                    self.refusals[frame["code"]] += 1
                    await trio.sleep(0.2)
                    return
