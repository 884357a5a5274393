"""Thousands of malformed websocket frames: no crash, no stuck session.

The daemon (with the fake model) runs in a background thread for the whole module;
hypothesis drives a synchronous test that opens a session per example, throws a batch of
generated frames at it, and checks that the session still answers and so does everyone
else.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakellm import open_fake_llm
from tests.web import WebDaemon, hello, next_frame, open_web_daemon, send, web_config

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


class ServerThread:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ready = threading.Event()
        self.web: WebDaemon | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.stop: trio.Event | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.stop = trio.Event()
        async with open_fake_llm() as fake_llm:
            config = web_config(
                self.tmp_path,
                fake_llm.base_url,
                web={"frame_burst": 100_000, "max_frames_per_second": 100_000},
            )
            async with open_web_daemon(config) as web:
                self.web = web
                self.ready.set()
                await self.stop.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDaemon]:
    thread = ServerThread(tmp_path_factory.mktemp("fuzz"))
    worker = threading.Thread(target=thread.run, daemon=True)
    worker.start()
    assert thread.ready.wait(30), "the daemon did not start"
    if thread.error is not None:
        raise thread.error
    assert thread.web is not None and thread.token is not None and thread.stop is not None
    yield thread.web
    trio.from_thread.run_sync(thread.stop.set, trio_token=thread.token)
    worker.join(30)
    assert thread.error is None


async def throw(web: WebDaemon, batch: list[Any], thread_id: str) -> None:
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
                nursery.cancel_scope.cancel()
            # the fuzzed session still works: it can still say hello and page its history
            await hello(ws, thread_id)
            await ws.send_message(json.dumps({"v": 1, "type": "history", "before_id": 10**9}))
            await next_frame(ws, "history")


async def check_others(web: WebDaemon) -> None:
    with trio.fail_after(30):
        async with web.socket() as other:
            await hello(other, "web_0123012301230123")
            await send(other, "still alive?")
            assert (await next_frame(other, "reply"))["text"] == "ok"


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(frames, min_size=5, max_size=25))
def test_malformed_frames_never_break_a_session(server: WebDaemon, batch: list[Any]) -> None:
    trio.run(throw, server, batch, "web_f0f0f0f0f0f0f0f0")


def test_after_the_fuzzing_other_sessions_still_work(server: WebDaemon) -> None:
    trio.run(check_others, server)
