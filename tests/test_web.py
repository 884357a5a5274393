"""The web interface over real HTTP and websockets on loopback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected

from ganglion.web import frames
from ganglion.web.session import FLOOD_CLOSE_AFTER
from tests.support.daemon import open_daemon
from tests.support.fakellm import FakeLLM, Reply
from tests.support.web import hello, next_frame, open_web_daemon, send, web_config

TAB_A = "web_a1a1a1a1a1a1a1a1"
TAB_B = "web_b2b2b2b2b2b2b2b2"


async def test_health_and_readiness_need_no_token(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.http() as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).text == "ready\n"
        web.state.draining = True  # what the tree does when asked to stop
        assert (await http.get("/readyz")).status_code == 503


async def test_the_token_is_generated_once_with_private_permissions(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = web_config(tmp_path, fake_llm.base_url)
    async with open_web_daemon(config) as web:
        first = web.token
    mode = stat.S_IMODE(os.stat(tmp_path / "web_token").st_mode)
    assert mode == 0o600
    assert len(first) >= 40
    async with open_web_daemon(config) as web:
        assert web.token == first


async def test_the_page_holds_no_secret_and_sets_no_cookie(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.http() as http:
        page = await http.get("/")
        assert page.status_code == 200 and "<title>Ganglion</title>" in page.text
        assert web.token not in page.text
        # A cookie an older version left is deleted; none is set.
        assert page.headers["set-cookie"].startswith("ganglion_token=;")
        assert "Max-Age=0" in page.headers["set-cookie"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"


async def test_an_old_token_link_moves_the_token_into_the_fragment(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.http() as http:
        login = await http.get(f"/c/{TAB_A}?token={web.token}")
        assert login.status_code == 303
        assert login.headers["location"] == f"/c/{TAB_A}#token={web.token}"
        assert "ganglion_token=" + web.token not in login.headers.get("set-cookie", "")


async def test_a_page_socket_must_send_the_right_token_first(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        for token, reason in ((None, "no token"), ("wrong", "wrong token")):
            async with web.socket(token=token) as ws:
                await ws.send_message(frames.hello(TAB_A))
                with pytest.raises(ConnectionClosed) as caught, trio.fail_after(10):
                    await ws.get_message()
            assert caught.value.reason.code == frames.CLOSE_UNAUTHORISED
            assert reason in (caught.value.reason.reason or "")
        async with web.socket() as ws:
            assert await hello(ws, TAB_A) == []


async def test_a_client_socket_without_the_token_is_refused(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        for token in (None, "wrong"):
            with pytest.raises(ConnectionRejected) as caught:
                async with web.socket(token=token, origin=None):
                    pass
            assert caught.value.status_code == 401
        async with web.socket(origin=None) as ws:
            assert await hello(ws, TAB_A) == []


async def test_a_websocket_from_a_foreign_origin_is_refused(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        with pytest.raises(ConnectionRejected) as caught:
            async with web.socket(origin="https://evil.example"):
                pass
        assert caught.value.status_code == 403


async def test_a_message_streams_a_reply_to_its_own_tab_only(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("Hello from the model", chunk_size=5))
    async with (
        open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web,
        web.socket() as tab_a,
        web.socket() as tab_b,
    ):
        assert await hello(tab_a, TAB_A) == []
        await hello(tab_b, TAB_B)
        await send(tab_a, "hi there")
        assert await next_frame(tab_a) == {
            "type": "accepted",
            "id": "m1",
            "turn_id": f"{TAB_A}/m1",
            "state": "queued",
            "duplicate": False,
        }
        started = await next_frame(tab_a, "turn_started")
        assert started == {
            "type": "turn_started",
            "turn_id": f"{TAB_A}/m1",
            "source": "user",
            "label": None,
        }
        delta = await next_frame(tab_a, "delta")
        assert delta["text"] == "Hello"
        reply = await next_frame(tab_a, "reply")
        assert reply["text"] == "Hello from the model"
        # Tab B's list learns of the new conversation, and nothing of what it says.
        created = {"type": "thread_changed", "thread_id": TAB_A, "change": "created"}
        assert await next_frame(tab_b) == created
        with trio.move_on_after(0.3):
            frame = await tab_b.get_message()
            raise AssertionError(f"tab B received {frame}")
        with trio.fail_after(10):  # a reply delivered live is marked so
            while await web.services.store.outbox.undelivered(TAB_A):
                await trio.sleep(0.01)


async def test_reconnecting_restores_history_with_replies_made_while_away(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("answered while you were away", gate=gate))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB_A)
            await send(tab, "a slow question")
            await next_frame(tab, "turn_started")
        gate.set()  # the tab is gone when the reply is made
        await fake_llm.wait_for_requests(1)
        with trio.fail_after(10):  # the reply is stored while no tab is connected
            while len(await web.services.store.library.history_page(TAB_A)) < 2:
                await trio.sleep(0.01)
        async with web.socket() as tab:
            history = await hello(tab, TAB_A)
        assert [(m["role"], m["content"]) for m in history] == [
            ("user", "a slow question"),
            ("assistant", "answered while you were away"),
        ]
        with trio.fail_after(10):  # marked right after the history frame went out
            while await web.services.store.outbox.undelivered(TAB_A):
                await trio.sleep(0.01)


async def test_bad_frames_get_error_frames_and_the_session_goes_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with (
        open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web,
        web.socket() as tab,
    ):
        bad = [
            ("not json", "bad_json"),
            ("[1, 2]", "bad_frame"),
            (json.dumps({"type": "launch_missiles"}), "unknown_type"),
            (json.dumps({"v": 2, "type": "hello", "thread_id": TAB_A}), "bad_version"),
            (json.dumps({"type": "send", "id": "x", "text": "before hello"}), "no_hello"),
            (json.dumps({"type": "hello", "thread_id": "../etc/passwd"}), "bad_frame"),
        ]
        for raw, code in bad:
            await tab.send_message(raw)
            frame = await next_frame(tab, "error")
            assert frame["code"] == code, (raw, frame)
        for raw_frame in (b"\x00\x01binary", b"", ""):
            await tab.send_message(raw_frame)
            assert (await next_frame(tab, "error"))["code"] == "bad_frame"
        await hello(tab, TAB_A)
        await send(tab, "x" * (70 * 1024))
        assert (await next_frame(tab, "error"))["code"] == "too_large"
        await send(tab, "still here?")
        assert (await next_frame(tab, "reply"))["text"] == "ok"


async def test_a_flood_is_rate_limited_then_closed(tmp_path: Path, fake_llm: FakeLLM) -> None:
    config = web_config(
        tmp_path, fake_llm.base_url, web={"frame_burst": 5, "max_frames_per_second": 0.001}
    )
    async with open_web_daemon(config) as web, web.socket() as other:
        await hello(other, TAB_B)
        async with web.socket() as flooder:
            for _ in range(5 + FLOOD_CLOSE_AFTER):  # the last one crosses the line
                await flooder.send_message("{}")
            frames = []
            with pytest.raises(ConnectionClosed) as caught, trio.fail_after(20):
                while True:
                    frames.append(json.loads(await flooder.get_message()))
            assert caught.value.reason.code == 1008
            assert caught.value.reason.reason == "too many frames"
            assert {
                "type": "error",
                "code": "rate_limited",
                "message": "too many frames; slow down",
                "id": None,
            } in frames
        await send(other, "the daemon still answers others")
        assert (await next_frame(other, "reply"))["text"] == "ok"


async def test_a_web_token_file_planted_as_a_link_stops_start_up(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    from ganglion.app import run_daemon
    from ganglion.errors import StartupError

    known = tmp_path / "known.txt"
    known.write_text("a token someone else chose\n")
    config = web_config(tmp_path / "data", fake_llm.base_url)
    config.data_dir.mkdir()
    (config.data_dir / "web_token").symlink_to(known)
    with pytest.raises(StartupError, match="web token file is not usable"):
        await run_daemon(config, handle_signals=False)


async def test_a_slow_delivery_mark_never_holds_up_the_other_tabs(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganglion.store import Outbox

    disk = trio.Event()  # the synced write of a delivery mark, held back
    original = Outbox.mark_delivered

    async def slow_mark(self: Outbox, outbox_ids: Any) -> None:
        await disk.wait()
        await original(self, outbox_ids)

    monkeypatch.setattr(Outbox, "mark_delivered", slow_mark)
    fake_llm.script(Reply("first"), Reply("second"))
    async with (
        open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web,
        web.socket() as tab_a,
        web.socket() as tab_b,
    ):
        await hello(tab_a, TAB_A)
        await hello(tab_b, TAB_B)
        await send(tab_a, "one")
        assert (await next_frame(tab_a, "reply"))["text"] == "first"
        await send(tab_b, "two")  # A's mark is still waiting on the disk
        assert (await next_frame(tab_b, "reply"))["text"] == "second"
        disk.set()
        with trio.fail_after(10):
            while await web.services.store.outbox.undelivered():
                await trio.sleep(0.01)


async def test_the_link_with_the_token_goes_to_the_terminal_never_to_the_log(
    tmp_path: Path, fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    caplog.set_level("DEBUG")
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        token = web.token
    terminal = capsys.readouterr().err
    assert f"open the web chat at {web.base}/#token={token}" in terminal
    assert all(token not in record.getMessage() for record in caplog.records)
    assert any("web chat ready at" in record.getMessage() for record in caplog.records)


async def test_a_configured_token_is_not_printed(
    tmp_path: Path, fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "configured-" + "t" * 30
    config = web_config(tmp_path, fake_llm.base_url, web={"token": token})
    async with open_daemon(config) as daemon:
        assert daemon.web is not None
        base = daemon.web.binds[0]
    terminal = capsys.readouterr().err
    assert f"open the web chat at {base}/ (with web.token)" in terminal
    assert token not in terminal


async def test_frames_that_once_ended_a_session_are_answered_and_it_goes_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    # Issue 26 row 8: a RecursionError and an OverflowError ended the session.
    fake_llm.script(Reply("still here"))
    async with (
        open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web,
        web.socket() as tab,
    ):
        await hello(tab, TAB_A)
        await tab.send_message("[" * 60_000)
        deep = await next_frame(tab, "error")
        assert (deep["code"], deep["message"]) == ("bad_json", "the frame is nested too deeply")
        for before_id in (2**63, 2**70, -(2**70)):
            await tab.send_message(json.dumps({"v": 1, "type": "history", "before_id": before_id}))
            assert (await next_frame(tab, "error"))["code"] == "bad_frame"
        await tab.send_message(
            json.dumps({"v": 1, "type": "hello", "thread_id": TAB_A, "last_seen": 2**64})
        )
        assert (await next_frame(tab, "error"))["code"] == "bad_frame"
        for query in ('"', "NEAR(", "a AND", "*", "col:x", "-", "(((", "^"):
            await tab.send_message(frames.search(query))
            assert (await next_frame(tab, "search_results", "error"))["type"] == "search_results"
        await tab.send_message(frames.history_request(2**63 - 1))  # the largest id is fine
        assert (await next_frame(tab, "history", "error"))["type"] == "history"
        await send(tab, "are you there?")
        assert (await next_frame(tab, "reply"))["text"] == "still here"
