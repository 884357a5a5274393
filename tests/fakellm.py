"""A scripted OpenAI-compatible model server for tests: real HTTP on loopback.

    async with open_fake_llm() as llm:
        llm.script(Reply("Hello"), HTTPError(500), Reply(tool_calls=(("add", '{"a": 1}'),)))
        ... point the client at llm.base_url ...
        assert llm.requests[0]["messages"][-1]["content"] == "hi"

Each request takes the next scripted step; when the script is empty, `responder(body)`
decides (default: `Reply("ok")`). Steps stream like a real server (SSE chunks,
tool-call arguments split across chunks, usage, `[DONE]`) or inject faults: an HTTP
error with Retry-After, a hang, a truncated stream, malformed JSON, a tool call written
as plain text. Written with h11 on trio sockets so faults can break the protocol at will.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio

__all__ = [
    "FakeLLM",
    "HTTPError",
    "Hang",
    "MalformedSSE",
    "Reply",
    "Step",
    "TextToolCall",
    "Truncated",
    "open_fake_llm",
]


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()
    chunk_size: int = 4
    latency: float = 0.0
    chunk_delay: float = 0.0
    usage: tuple[int, int] = (10, 5)
    gate: trio.Event | None = None
    stall_after: int | None = None  # go silent (but keep the connection) after N pieces


@dataclass(frozen=True)
class HTTPError:
    status: int
    body: str = '{"error": {"message": "scripted failure"}}'
    retry_after: float | None = None


@dataclass(frozen=True)
class Hang:
    pass


@dataclass(frozen=True)
class Truncated:
    text: str = "partial answer that never"
    after_chunks: int = 2


@dataclass(frozen=True)
class MalformedSSE:
    pass


@dataclass(frozen=True)
class TextToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


Step = Reply | HTTPError | Hang | Truncated | MalformedSSE | TextToolCall


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or []


class FakeLLM:
    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.responder: Callable[[dict[str, Any]], Step] = lambda body: Reply("ok")
        self._script: deque[Step] = deque()
        self.received = trio.Event()  # set on every request; replaced after each wait
        self.in_flight = 0

    def script(self, *steps: Step) -> None:
        self._script.extend(steps)

    async def wait_for_requests(self, count: int) -> None:
        with trio.fail_after(60):
            while len(self.requests) < count:
                self.received = trio.Event()
                await self.received.wait()

    def _next(self, body: dict[str, Any]) -> Step:
        return self._script.popleft() if self._script else self.responder(body)

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        data = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    received = await stream.receive_some(65536)
                    if not received:
                        return
                    conn.receive_data(received)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            assert request is not None
            body = json.loads(data or b"{}")
            self.requests.append(body)
            self.headers.append({k.decode().lower(): v.decode() for k, v in request.headers})
            self.received.set()
            self.in_flight += 1
            try:
                await self._respond(stream, conn, body, self._next(body))
            finally:
                self.in_flight -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _send(self, stream: trio.SocketStream, conn: h11.Connection, event: Any) -> None:
        await stream.send_all(conn.send(event) or b"")

    async def _start_sse(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        headers = [("content-type", "text/event-stream"), ("connection", "close")]
        await self._send(stream, conn, h11.Response(status_code=200, headers=headers))

    async def _event(self, stream: trio.SocketStream, conn: h11.Connection, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self._send(stream, conn, h11.Data(data=f"data: {text}\n\n".encode()))

    async def _respond(
        self, stream: trio.SocketStream, conn: h11.Connection, body: dict[str, Any], step: Step
    ) -> None:
        model = str(body.get("model", "fake"))
        match step:
            case HTTPError(status=status, body=text, retry_after=retry_after):
                headers = [("content-type", "application/json"), ("connection", "close")]
                if retry_after is not None:
                    headers.append(("retry-after", f"{retry_after:g}"))
                payload = text.encode()
                headers.append(("content-length", str(len(payload))))
                await self._send(stream, conn, h11.Response(status_code=status, headers=headers))
                await self._send(stream, conn, h11.Data(data=payload))
                await self._send(stream, conn, h11.EndOfMessage())
            case Hang():
                while await stream.receive_some(65536):
                    pass
            case Truncated(text=text, after_chunks=after):
                await self._start_sse(stream, conn)
                for piece in _pieces(text, 4)[:after]:
                    await self._event(stream, conn, _chunk(model, {"content": piece}))
                # close the connection mid-body: no finish_reason, no [DONE]
            case MalformedSSE():
                await self._start_sse(stream, conn)
                await self._event(stream, conn, _chunk(model, {"role": "assistant"}))
                await self._event(stream, conn, '{"choices": [{"delta": {"content": "oops"')
                await self._send(stream, conn, h11.EndOfMessage())
            case TextToolCall(name=name, arguments=arguments):
                text = json.dumps({"name": name, "arguments": arguments})
                await self._stream_reply(stream, conn, body, model, Reply(text))
            case Reply():
                await self._stream_reply(stream, conn, body, model, step)

    async def _stream_reply(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        body: dict[str, Any],
        model: str,
        reply: Reply,
    ) -> None:
        if reply.gate is not None:
            await reply.gate.wait()
        await trio.sleep(reply.latency)
        finish = "tool_calls" if reply.tool_calls else "stop"
        if not body.get("stream"):
            await self._whole_reply(stream, conn, model, reply, finish)
            return
        await self._start_sse(stream, conn)
        await self._event(stream, conn, _chunk(model, {"role": "assistant", "content": ""}))
        for number, piece in enumerate(_pieces(reply.text, reply.chunk_size)):
            if number == reply.stall_after:
                while await stream.receive_some(65536):
                    pass
                return
            await trio.sleep(reply.chunk_delay)
            await self._event(stream, conn, _chunk(model, {"content": piece}))
        for index, (name, arguments) in enumerate(reply.tool_calls):
            first = {"index": index, "id": f"call_{index}", "type": "function"}
            await self._event(
                stream,
                conn,
                _chunk(
                    model, {"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]}
                ),
            )
            for piece in _pieces(arguments, 5):
                delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                await self._event(stream, conn, _chunk(model, delta))
        await self._event(stream, conn, _chunk(model, {}, finish))
        prompt, completion = reply.usage
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        await self._event(stream, conn, {**_chunk(model, {}), "choices": [], "usage": usage})
        await self._event(stream, conn, "[DONE]")
        await self._send(stream, conn, h11.EndOfMessage())

    async def _whole_reply(
        self, stream: trio.SocketStream, conn: h11.Connection, model: str, reply: Reply, finish: str
    ) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                for i, (n, a) in enumerate(reply.tool_calls)
            ]
        prompt, completion = reply.usage
        payload = json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            }
        ).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
        await self._send(stream, conn, h11.Response(status_code=200, headers=headers))
        await self._send(stream, conn, h11.Data(data=payload))
        await self._send(stream, conn, h11.EndOfMessage())


@asynccontextmanager
async def open_fake_llm() -> AsyncIterator[FakeLLM]:
    """Serve a `FakeLLM` on 127.0.0.1 (a free port) for the duration of the block."""
    fake = FakeLLM()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        yield fake
        nursery.cancel_scope.cancel()
