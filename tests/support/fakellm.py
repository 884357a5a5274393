"""A scripted OpenAI-compatible model server for tests: real HTTP on loopback.

    async with open_fake_llm() as llm:
        llm.script(Reply("Hello"), HTTPError(500), Reply(tool_calls=(("add", '{"a": 1}'),)))
        ... point the client at llm.base_url ...
        assert llm.requests[0]["messages"][-1]["content"] == "hi"

Each `POST .../chat/completions` takes the next scripted step; when the script is empty,
`responder(body)` decides (None: `Reply("ok")`). Steps answer like a real server (SSE
chunks, tool-call arguments split across chunks, a usage chunk when
`stream_options.include_usage` asks for it, `[DONE]`; one JSON body when the request says
`"stream": false`) or inject faults: an HTTP error with Retry-After, a hang, a truncated
stream, malformed JSON, a tool call written as plain text. Connections are kept alive
between requests as real servers do. Written with h11 on trio sockets so that faults can
break the protocol at will. `GET .../models` lists one model; `routes` adds answers for
other paths (what llama.cpp's `/props` or vLLM's model list says); other paths get a 404.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

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
    "calling",
    "calling_all",
    "offered_tools",
    "open_fake_llm",
]

RECEIVE_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Reply:
    """A normal answer: `text` and/or `tool_calls` as (name, arguments JSON text) pairs.

    Streamed as `chunk_size`-character content deltas, each tool call as a first delta
    with id and name, then its arguments in 5-character pieces. `latency` is the delay
    before the first byte, `chunk_delay` the delay before each text chunk. `usage` is
    (prompt, completion) tokens, None to send no usage. `finish_reason` None means
    "tool_calls" when there are calls, else "stop". `send_done=False` ends the stream
    after the finish reason without `[DONE]`; `ignore_stream` answers with one JSON body
    even when streaming was asked for. `gate`, when set, is awaited before answering;
    `stall_after=n` goes silent (keeping the connection open) after n text chunks.
    `ending` says what follows the last event: "close" ends the body properly, "drop"
    breaks the connection instead, "linger" keeps it open and silent.
    """

    text: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()
    chunk_size: int = 4
    latency: float = 0.0
    chunk_delay: float = 0.0
    usage: tuple[int, int] | None = (10, 5)
    finish_reason: str | None = None
    send_done: bool = True
    ignore_stream: bool = False
    gate: trio.Event | None = None
    stall_after: int | None = None
    ending: Literal["close", "drop", "linger"] = "close"


def calling(name: str, /, **arguments: Any) -> Reply:
    """A reply that calls one tool with `arguments`."""
    return Reply(tool_calls=((name, json.dumps(arguments)),))


def calling_all(*calls: tuple[str, Mapping[str, Any]]) -> Reply:
    """A reply that calls several tools in one round."""
    return Reply(tool_calls=tuple((name, json.dumps(dict(args))) for name, args in calls))


def offered_tools(request: Mapping[str, Any]) -> set[str]:
    """The names of the tools a model request offered."""
    return {t["function"]["name"] for t in request.get("tools") or ()}


@dataclass(frozen=True, slots=True)
class HTTPError:
    """An HTTP error status with a body (and a `Retry-After` header if given)."""

    status: int
    body: str = '{"error": {"message": "scripted failure"}}'
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Hang:
    """Read the request, then never answer; the connection closes when the client's does."""


@dataclass(frozen=True, slots=True)
class Truncated:
    """Stream `after_chunks` 4-character text chunks, then drop the connection."""

    text: str = "partial answer that never"
    after_chunks: int = 2


@dataclass(frozen=True, slots=True)
class MalformedSSE:
    """Stream a role chunk, then a `data:` line whose JSON is cut in the middle."""


@dataclass(frozen=True, slots=True)
class TextToolCall:
    """A plain content answer that is a tool call written as JSON (Ollama-style models)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


Step = Reply | HTTPError | Hang | Truncated | MalformedSSE | TextToolCall


class FakeLLM:
    """The server's state: the script, and what it has received.

    `requests` holds every chat-completion body (parsed JSON) in order; `headers` the
    matching request headers (names lower-cased); `in_flight` the requests being answered;
    `routes` maps a path (`/props`, `/v1/models`, `/api/show`) to the JSON it answers.
    """

    def __init__(self, responder: Callable[[dict[str, Any]], Step] | None = None) -> None:
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.responder = responder
        self.in_flight = 0
        self.routes: dict[str, Any] = {}
        self.paths: list[str] = []  # every request's method and path, in order
        self._script: deque[Step] = deque()
        self._received = trio.Event()

    def script(self, *steps: Step) -> None:
        """Queue responses, consumed one per chat-completion request, in order."""
        self._script.extend(steps)

    async def wait_for_requests(self, count: int) -> None:
        """Wait until `count` chat-completion requests have been received in all."""
        with trio.fail_after(60):
            while len(self.requests) < count:
                await self._received.wait()

    def _next_step(self, body: dict[str, Any]) -> Step:
        if self._script:
            return self._script.popleft()
        return self.responder(body) if self.responder is not None else Reply("ok")

    async def handle(self, stream: trio.SocketStream) -> None:
        await serve_requests(stream, self._route)

    async def _route(self, http: _Connection, request: h11.Request, data: bytes) -> None:
        path = request.target.decode().split("?")[0]
        self.paths.append(f"{request.method.decode()} {path}")
        if path in self.routes:
            await http.send_json(200, self.routes[path])
        elif request.method == b"GET" and path.endswith("/models"):
            await http.send_json(200, {"object": "list", "data": [{"id": "fake"}]})
        elif request.method == b"POST" and path.endswith("/chat/completions"):
            try:
                body = json.loads(data or b"{}")
            except json.JSONDecodeError:
                await http.send_json(400, {"error": {"message": "invalid JSON body"}})
                return
            self.requests.append(body)
            self.headers.append({k.decode().lower(): v.decode() for k, v in request.headers})
            self._received.set()
            self._received = trio.Event()
            self.in_flight += 1
            try:
                await _answer(http, body, self._next_step(body))
            finally:
                self.in_flight -= 1
        else:
            await http.send_json(404, {"error": {"message": f"no route for {path}"}})


Route = Callable[["_Connection", h11.Request, bytes], Awaitable[None]]


async def serve_requests(stream: trio.SocketStream, route: Route) -> None:
    """Serve one connection: requests one after another, each answered by `route`, while
    it is kept alive."""
    http = _Connection(stream)
    try:
        while (request := await http.receive_request()) is not None:
            await route(http, *request)
            if not http.next_cycle():
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return
    finally:
        await stream.aclose()


class _Connection:
    """h11 on a trio stream, with the few sends the answers need."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER)

    async def receive_request(self) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        data = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(RECEIVE_SIZE))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, bytes(data)
            else:  # ConnectionClosed, or the peer left mid-request
                return None

    def next_cycle(self) -> bool:
        """Get ready for the next request on this connection; False if it must close."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        return False

    async def send(self, event: h11.Event) -> None:
        await self.stream.send_all(self.conn.send(event) or b"")

    async def send_body(self, status: int, content_type: str, payload: bytes) -> None:
        headers = [("content-type", content_type), ("content-length", str(len(payload)))]
        await self.send(h11.Response(status_code=status, headers=headers))
        await self.send(h11.Data(data=payload))
        await self.send(h11.EndOfMessage())

    async def send_json(self, status: int, value: Any) -> None:
        await self.send_body(status, "application/json", json.dumps(value).encode())

    async def start_events(self) -> None:
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        await self.send(h11.Response(status_code=200, headers=headers))

    async def event(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.send(h11.Data(data=f"data: {text}\n\n".encode()))

    async def wait_for_close(self) -> None:
        """Stay silent until the client goes away."""
        while await self.stream.receive_some(RECEIVE_SIZE):
            pass


async def _answer(http: _Connection, body: dict[str, Any], step: Step) -> None:
    model = str(body.get("model", "fake"))
    streaming = bool(body.get("stream"))
    match step:
        case HTTPError(status=status, body=text, retry_after=retry_after):
            payload = text.encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
            if retry_after is not None:
                headers.append(("retry-after", f"{retry_after:g}"))
            await http.send(h11.Response(status_code=status, headers=headers))
            await http.send(h11.Data(data=payload))
            await http.send(h11.EndOfMessage())
        case Hang():
            await http.wait_for_close()
        case Truncated(text=text, after_chunks=after):
            await _truncated(http, model, text, after, streaming)
        case MalformedSSE() if streaming:
            await http.start_events()
            await http.event(_chunk(model, {"role": "assistant"}))
            await http.event('{"choices": [{"delta": {"content": "oops"')
            await http.send(h11.EndOfMessage())
        case MalformedSSE():
            await http.send_body(200, "application/json", b'{"choices": [{"message": ')
        case TextToolCall(name=name, arguments=arguments):
            text = json.dumps({"name": name, "arguments": dict(arguments)})
            await _reply(http, body, model, Reply(text))
        case Reply():
            await _reply(http, body, model, step)


async def _truncated(http: _Connection, model: str, text: str, after: int, streaming: bool) -> None:
    if streaming:
        await http.start_events()
        for piece in _pieces(text, 4)[:after]:
            await http.event(_chunk(model, {"content": piece}))
        return  # the connection closes mid-body: no finish_reason, no [DONE]
    payload = json.dumps(_whole(model, Reply(text))).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
    await http.send(h11.Response(status_code=200, headers=headers))
    await http.send(h11.Data(data=payload[: len(payload) // 2]))


async def _reply(http: _Connection, body: dict[str, Any], model: str, reply: Reply) -> None:
    if reply.gate is not None:
        await reply.gate.wait()
    await trio.sleep(reply.latency)
    if not body.get("stream") or reply.ignore_stream:
        await http.send_json(200, _whole(model, reply))
        return
    await http.start_events()
    await http.event(_chunk(model, {"role": "assistant", "content": ""}))
    for number, piece in enumerate(_pieces(reply.text, reply.chunk_size)):
        if number == reply.stall_after:
            await http.wait_for_close()
            return
        await trio.sleep(reply.chunk_delay)
        await http.event(_chunk(model, {"content": piece}))
    for index, (name, arguments) in enumerate(reply.tool_calls):
        for delta in _tool_call_deltas(index, name, arguments):
            await http.event(_chunk(model, {"tool_calls": [delta]}))
    await http.event(_chunk(model, {}, _finish_reason(reply)))
    options = body.get("stream_options")
    if reply.usage is not None and isinstance(options, dict) and options.get("include_usage"):
        await http.event({**_chunk(model, {}), "choices": [], "usage": _usage(reply.usage)})
    if reply.send_done:
        await http.event("[DONE]")
    if reply.ending == "drop":
        return  # the connection closes mid-body
    if reply.ending == "linger":
        await http.wait_for_close()
        return
    await http.send(h11.EndOfMessage())


def _tool_call_deltas(index: int, name: str, arguments: str) -> list[dict[str, Any]]:
    first = {
        "index": index,
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    rest = [{"index": index, "function": {"arguments": p}} for p in _pieces(arguments, 5)]
    return [first, *rest]


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _whole(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(reply.tool_calls)
        ]
    whole: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(reply)}],
    }
    if reply.usage is not None:
        whole["usage"] = _usage(reply.usage)
    return whole


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    prompt, completion = usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": sum(usage)}


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@asynccontextmanager
async def open_fake_llm(
    *, responder: Callable[[dict[str, Any]], Step] | None = None
) -> AsyncIterator[FakeLLM]:
    """Serve a `FakeLLM` on 127.0.0.1 (a free port) for the duration of the block.

    Resource handling: the server runs in a nursery of its own; leaving the block stops it
    and closes every open connection.
    """
    fake = FakeLLM(responder)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        yield fake
        nursery.cancel_scope.cancel()
