"""Issue 19, rows 3 and 11, against a real `ganglion run` process: the files are the
owner's only, the token never reaches a log file, and the web chat refuses pages of other
origins (DNS rebinding included) and short tokens off loopback. (Token guessing: no
lockout, `test_security_local_user`.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.process import run_ganglion

pytestmark = pytest.mark.slow


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def handshake(live: LiveDaemon, *, host: str, origin: str, token: str | None) -> int:
    """A websocket upgrade with exactly these headers; the status the daemon answers."""
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        f"Origin: {origin}",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", live.port)
        async with stream:
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            answer = b""
            while b"\r\n" not in answer:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                answer += chunk
    return int(answer.split(b" ", 2)[1])


async def test_files_are_private_and_the_token_stays_out_of_the_log(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_live_daemon(tmp_path, fake_llm.base_url, start=False) as live:
        live.data_dir.mkdir(mode=0o755)
        (live.data_dir / "MEMORIES.txt").write_text("- the owner likes tea\n")
        os.chmod(live.data_dir, 0o755)
        os.chmod(live.data_dir / "MEMORIES.txt", 0o644)
        await live.start()
        token = live.token
        assert await live.stop() == 0
    log_dir = live.root / "logs"
    logged = "".join(p.read_text() for p in log_dir.iterdir())
    assert token not in logged
    assert "MEMORIES.txt was readable by other users" in logged
    assert f"#token={token}" in live.output()  # the terminal has the link
    assert mode(live.data_dir) == 0o700 and mode(log_dir) == 0o700
    for path in [*live.data_dir.rglob("*"), *log_dir.iterdir()]:
        assert not mode(path) & 0o077, path
    assert mode(live.data_dir / "conversation.db") == 0o600


async def test_a_page_of_another_origin_is_refused_even_with_a_matching_host(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    allowed = "https://chat.example.org"
    async with open_live_daemon(
        tmp_path, fake_llm.base_url, web={"allowed_origins": [allowed]}
    ) as live:
        own = f"127.0.0.1:{live.port}"
        rebound = f"rebind.example:{live.port}"
        # DNS rebinding: the page's origin and the Host header agree, and are not ours
        assert await handshake(
            live, host=rebound, origin=f"http://{rebound}", token=live.token
        ) in (
            403,
            421,
        )
        assert await handshake(live, host=own, origin=f"http://{rebound}", token=live.token) == 403
        assert await handshake(live, host=own, origin=f"http://{own}", token=live.token) == 101
        localhost = f"http://localhost:{live.port}"
        assert await handshake(live, host=own, origin=localhost, token=live.token) == 101
        assert await handshake(live, host=own, origin=allowed, token=live.token) == 101
        async with httpx.AsyncClient(base_url=live.base) as http:
            assert (await http.get("/", headers={"Host": rebound})).status_code == 421
            assert (await http.get("/")).status_code == 200


async def test_a_short_token_is_refused_off_loopback(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nweb: {{host: 0.0.0.0, token: short}}\n")
    result = await run_ganglion("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "web.token must be at least 32 characters" in result.stderr.decode()
