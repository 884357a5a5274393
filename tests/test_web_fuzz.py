"""Thousands of malformed websocket frames: no crash, no stuck session.

The daemon (with the fake model) runs in a background thread for the whole module;
hypothesis drives a synchronous test that opens a session per example, throws a batch of
generated frames at it, and checks that the session still answers and so does everyone
else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganglion.web.frames import history_request
from tests.support.web import WebDaemon, hello, next_frame, send, serve_in_thread

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "send", "history", "bye", ""])},
    optional={
        "v": json_values,
        "thread_id": st.text(max_size=70) | json_values,
        "id": st.text(max_size=120) | json_values,
        "text": st.text(max_size=50) | json_values,
        "before_id": json_values,
        "last_seen": json_values,
        "extra": json_values,
    },
)
frames = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    json_values.map(json.dumps),
    frame_like.map(json.dumps),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDaemon]:
    fast = {"frame_burst": 100_000, "max_frames_per_second": 100_000}
    with serve_in_thread(tmp_path_factory.mktemp("fuzz"), web=fast) as thread:
        yield thread.web


def surely_refused(raw: str | bytes) -> bool:
    """A frame no version of the protocol takes: binary, empty, not JSON, or JSON that is
    not an object. Each must be answered with an `error` frame."""
    if isinstance(raw, bytes) or not raw:
        return True
    try:
        return not isinstance(json.loads(raw), dict)
    except ValueError:
        return True


async def throw(web: WebDaemon, batch: list[Any], thread_id: str) -> None:
    refused = sum(map(surely_refused, batch))
    with trio.fail_after(30):
        async with web.socket() as ws:
            errors = 0

            async def drain() -> None:
                nonlocal errors
                while True:
                    errors += json.loads(await ws.get_message())["type"] == "error"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                for raw in batch:
                    await ws.send_message(raw)
                while errors < refused:  # every frame surely refused is answered
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            # the fuzzed session still works: it can still say hello and page its history
            await hello(ws, thread_id)
            await ws.send_message(history_request(10**9))
            await next_frame(ws, "history")


async def check_others(web: WebDaemon) -> None:
    with trio.fail_after(30):
        async with web.socket() as other:
            await hello(other, "web_0123012301230123")
            await send(other, "still alive?")
            assert (await next_frame(other, "reply"))["text"] == "ok"


# Each example is a real websocket session: slower than hypothesis expects of a test.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(frames, min_size=5, max_size=25))
def test_malformed_frames_never_break_a_session(server: WebDaemon, batch: list[Any]) -> None:
    trio.run(throw, server, batch, "web_f0f0f0f0f0f0f0f0")


def test_after_the_fuzzing_other_sessions_still_work(server: WebDaemon) -> None:
    trio.run(check_others, server)
