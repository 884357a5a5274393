"""Issue 26, rows 1 and 2, as they were found: another local user (a real account, see
`tests.support.stranger`) holds the web port while the daemon is stopped, or knocks
without a token while it runs. The owner's token never reaches them, and they cannot
lock the owner out."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.process import run_ganglion
from tests.support.stranger import Stranger, make_stranger

pytestmark = pytest.mark.slow

# What a stranger's server does: accept, keep every byte it is sent, answer like a
# daemon would (a status report, a websocket upgrade refused), until killed.
LISTENER = """
import socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
print("listening", flush=True)
with open(out, "ab") as kept:
    while True:
        client, _ = server.accept()
        client.settimeout(1)
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                kept.write(data)
                kept.flush()
                if b"\\r\\n\\r\\n" in data:
                    client.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
        except OSError:
            pass
        client.close()
"""


@pytest.fixture
def stranger() -> Iterator[Stranger]:
    made = make_stranger()
    yield made
    shutil.rmtree(made.home, ignore_errors=True)


@asynccontextmanager
async def stranger_listening(stranger: Stranger, port: int) -> AsyncIterator[Path]:
    """The stranger's server on `port`; yields the file of what it received."""
    kept = stranger.home / "received"
    argv = [*stranger.argv(LISTENER), str(port), str(kept)]
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            assert b"listening" in await process.stdout.receive_some(100)
        yield kept
    finally:
        process.kill()
        await process.wait()


async def stopped_daemon(tmp_path: Path, fake_llm: FakeLLM) -> LiveDaemon:
    """A daemon that ran once (its token is on disk) and is stopped."""
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        assert await live.stop() == 0
    return live


async def test_the_cli_sends_no_token_to_another_users_server_on_the_port(
    tmp_path: Path, fake_llm: FakeLLM, stranger: Stranger
) -> None:
    live = await stopped_daemon(tmp_path, fake_llm)
    async with stranger_listening(stranger, live.port) as received:
        status = await run_ganglion("status", "--config", str(live.config_path), cwd=tmp_path)
        chat = await run_ganglion(
            "chat", "-m", "hi", "--config", str(live.config_path), cwd=tmp_path
        )
    for result in (status, chat):
        assert result.returncode == 3, result.stderr
        assert f"belongs to another user (uid {stranger.uid})" in result.stderr.decode()
        assert "the token was not sent" in result.stderr.decode()
    heard = received.read_bytes() if received.exists() else b""
    assert heard == b""  # not a byte: no request line, no header, no token
    assert live.token.encode() not in heard


async def test_requests_without_or_with_wrong_tokens_never_lock_the_owner_out(
    tmp_path: Path, fake_llm: FakeLLM, stranger: Stranger
) -> None:
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        knock = f"""
import urllib.request, urllib.error, json
statuses = []
for n in range(60):
    request = urllib.request.Request("{live.base}/api/status")
    if n % 2:
        request.add_header("Authorization", f"Bearer guess{{n}}")
    try:
        statuses.append(urllib.request.urlopen(request, timeout=10).status)
    except urllib.error.HTTPError as error:
        statuses.append(error.code)
print(json.dumps(statuses))
"""
        knocked = await stranger.run(knock)
        assert knocked.returncode == 0, knocked.stderr
        assert set(json.loads(knocked.stdout)) == {401}
        # The owner right after, from the same address: served, every time.
        async with httpx.AsyncClient(base_url=live.base) as http:
            for _ in range(3):
                reply = await http.get(
                    "/api/status", headers={"Authorization": f"Bearer {live.token}"}
                )
                assert reply.status_code == 200
        status = await run_ganglion("status", "--config", str(live.config_path), cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        chat = await run_ganglion(
            "chat", "-m", "/help", "--config", str(live.config_path), cwd=tmp_path
        )
        assert chat.returncode == 0, chat.stderr
