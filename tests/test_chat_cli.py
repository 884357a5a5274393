"""`ganglion chat -m` as a user runs it: a subprocess against a running daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support.fakellm import FakeLLM, HTTPError, Reply, calling
from tests.support.process import modules_loaded_by, run_ganglion
from tests.support.web import open_web_daemon, web_config

pytestmark = pytest.mark.slow


def chat_config(tmp_path: Path, port: int | str, data_dir: Path) -> Path:
    path = tmp_path / "chat.yaml"
    path.write_text(f"data_dir: {data_dir}\nweb: {{port: {port}}}\nlogging: {{dir: null}}\n")
    return path


async def ganglion_chat(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return await run_ganglion("chat", *args, cwd=cwd, env=env)


async def test_chat_m_prints_the_reply_and_exits_0(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("Hi from the daemon!"))
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        port = web.base.rsplit(":", 1)[1]
        path = chat_config(tmp_path, port, config.data_dir)
        result = await ganglion_chat("--config", str(path), "-m", "hello", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "Hi from the daemon!\n"
    assert fake_llm.requests[0]["messages"][-1] == {"role": "user", "content": "hello"}


async def test_chat_m_runs_commands(tmp_path: Path, fake_llm: FakeLLM) -> None:
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat("--config", str(path), "-m", "/help", cwd=tmp_path)
    assert result.returncode == 0
    assert "/reminders" in result.stdout.decode()


async def test_chat_m_exits_1_when_the_turn_fails(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(500))
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat("--config", str(path), "-m", "hello", cwd=tmp_path)
    assert result.returncode == 1
    assert "the turn failed: The model server at " in result.stderr.decode()
    assert "answered with an error (HTTP 500)" in result.stderr.decode()


async def test_chat_m_with_a_wrong_token_says_so(tmp_path: Path, fake_llm: FakeLLM) -> None:
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        import os

        env = {**os.environ, "GANGLION_WEB_TOKEN": "not-the-token"}
        result = await ganglion_chat("--config", str(path), "-m", "hello", cwd=tmp_path, env=env)
    assert result.returncode == 3
    assert "refused the token" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


async def test_chat_m_without_a_daemon_says_it_is_not_running(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "web_token").write_text("abc\n")
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    path = chat_config(tmp_path, free_port, tmp_path / "data")
    result = await ganglion_chat("--config", str(path), "-m", "hello", cwd=tmp_path)
    assert result.returncode == 3
    assert "is `ganglion run` running?" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


# What the daemon is made of; `ganglion chat` must start without any of it.
DAEMON_MODULES = {
    "ganglion.app",
    "ganglion.runtime",
    "ganglion.store",
    "ganglion.threads.actor",
    "ganglion.llm",
    "ganglion.web.server",
    "ganglion.web.protocol",
    "ganglion.matrix",
    "quart",
    "hypercorn",
    "nio",
    "httpx",
    "sqlite_utils",
}


async def test_the_terminal_client_imports_neither_pydantic_nor_the_daemon(
    tmp_path: Path,
) -> None:
    loaded = await modules_loaded_by("import ganglion.terminal", tmp_path)
    assert "ganglion.web.frames" in loaded
    assert not loaded & (DAEMON_MODULES | {"pydantic", "ganglion.config", "yaml"})


@pytest.mark.parametrize(
    ("command", "uses", "reads"),
    [
        (["chat", "-m", "hi"], "ganglion.terminal", set()),
        (["status"], "ganglion.ops.statustext", {"httpx"}),
        (["reminders", "list"], "ganglion.reminders.cli", {"ganglion.store", "sqlite_utils"}),
    ],
)
async def test_the_client_commands_import_nothing_of_the_daemon(
    tmp_path: Path, command: list[str], uses: str, reads: set[str]
) -> None:
    # They start in a fifth of a second: no pydantic, no server, no thread actor, no SDK.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "web_token").write_text("abc\n")
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    path = chat_config(tmp_path, free_port, tmp_path / "data")
    argv = (
        [*command, "--config", str(path)]
        if command[0] != "reminders"
        else ["reminders", "--config", str(path), "list"]
    )
    loaded = await modules_loaded_by(f"from ganglion.cli import main\nmain({argv!r})", tmp_path)
    assert uses in loaded
    assert not loaded & (DAEMON_MODULES - reads | {"pydantic", "ganglion.config"})


async def test_chat_m_names_the_model_endpoint_that_refuses_connections(tmp_path: Path) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = f"http://127.0.0.1:{port}/v1"  # nothing listens there
    config = web_config(tmp_path / "daemon", down)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat("--config", str(path), "-m", "hello", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        f"the turn failed: Cannot reach the model server at {down}: connection refused. "
        "Is the server running?"
    ) in result.stderr.decode()


async def test_chat_m_lists_the_models_when_the_model_is_unknown(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.routes["/v1/models"] = {"data": [{"id": "llama3.2:3b"}]}
    fake_llm.script(HTTPError(404, body='{"error": {"message": "model \\"gpt-5\\" not found"}}'))
    config = web_config(tmp_path / "daemon", fake_llm.base_url, llm={"model": "gpt-5"})
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat("--config", str(path), "-m", "hello", cwd=tmp_path)
    assert result.returncode == 1
    assert 'has no model "gpt-5" (HTTP 404); it has: llama3.2:3b.' in result.stderr.decode(), (
        result.stderr.decode()
    )


async def ganglion_chat_fed(
    path: Path, lines: str, *, cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    """`ganglion chat` with `lines` on its stdin, a pipe, as a script or a cron job runs it."""
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "ganglion", "chat", "--config", str(path)],
            stdin=lines.encode(),
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_chat_fed_by_a_pipe_answers_each_line_in_turn_and_exits_0(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("First answer."), Reply("Second answer."), Reply("Third answer."))
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat_fed(path, "one\ntwo\n/tools\nthree\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.startswith("First answer.\nSecond answer.\n"), out
    assert out.endswith("\nThird answer.\n"), out
    assert "shell" in out.removeprefix("First answer.\nSecond answer.\n"), out  # /tools
    # Each line went out only once the one before it was answered: the model saw the
    # earlier answers in the history of the later turns.
    sent = [r["messages"] for r in fake_llm.requests]
    assert [m[-1] for m in sent] == [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    assert {"role": "assistant", "content": "Second answer."} in sent[2]


async def test_chat_fed_by_a_pipe_exits_1_when_a_turn_failed_and_still_sends_the_rest(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(HTTPError(500), Reply("Later answer."))
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat_fed(path, "one\ntwo\n", cwd=tmp_path)
    assert result.returncode == 1
    assert "the turn failed: The model server at " in result.stderr.decode()
    assert result.stdout.decode() == "Later answer.\n"


async def test_chat_fed_an_empty_input_exits_0_without_sending(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = web_config(tmp_path / "daemon", fake_llm.base_url)
    async with open_web_daemon(config) as web:
        path = chat_config(tmp_path, web.base.rsplit(":", 1)[1], config.data_dir)
        result = await ganglion_chat_fed(path, "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == ""
    assert fake_llm.requests == []


async def test_chat_m_says_it_waits_for_an_approval_and_prints_the_answer_after_it(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    marker = tmp_path / "ran"
    fake_llm.script(calling("shell", command=f"touch {marker}"), Reply("Touched it."))
    cautious = {"approval": {"default": {"shell": "ask"}, "rules": []}}
    config = web_config(tmp_path / "daemon", fake_llm.base_url, tools=cautious)
    async with open_web_daemon(config) as web:
        port = web.base.rsplit(":", 1)[1]
        path = chat_config(tmp_path, port, config.data_dir)
        results: list[subprocess.CompletedProcess[bytes]] = []

        async def chat() -> None:
            results.append(await ganglion_chat("--config", str(path), "-m", "touch", cwd=tmp_path))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat)
            approver = web.services.deps.approver
            with trio.fail_after(30):
                while not (pending := await approver.pending()):
                    await trio.sleep(0.05)
            assert not marker.exists()
            answer = await web.services.backend.decide_approval(
                pending[0].asked_in, pending[0].id, "allow", "owner"
            )
            assert answer.settled
    result = results[0]
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "Touched it.\n"
    assert f"waiting for your approval of 'shell: touch {marker}'" in result.stderr.decode()
    assert marker.exists()
