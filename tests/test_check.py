"""`ganglion check` as a user runs it: a subprocess against a healthy set-up, and against
each failure it reports."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.daemon import merge_settings
from tests.support.fakellm import FakeLLM, HTTPError, Reply
from tests.support.live import free_port
from tests.support.process import run_ganglion

pytestmark = pytest.mark.slow

MCP_SERVER = str(Path(__file__).parent / "support" / "mcpserver.py")


def write_config(tmp_path: Path, llm_url: str, **overrides: Any) -> Path:
    raw: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "llm": {"base_url": llm_url, "model": "fake"},
        "web": {"port": free_port()},
        "logging": {"dir": None},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(merge_settings(raw, overrides)))
    return path


async def check(tmp_path: Path, path: Path, *more: str, env: dict[str, str] | None = None) -> Any:
    result = await run_ganglion("check", "--config", str(path), *more, cwd=tmp_path, env=env)
    return result


async def check_json(tmp_path: Path, path: Path, **kw: Any) -> tuple[int, dict[str, Any]]:
    result = await check(tmp_path, path, "--json", **kw)
    return result.returncode, json.loads(result.stdout)


def finding(report: dict[str, Any], what: str) -> dict[str, Any]:
    [found] = [c for c in report["checks"] if c["what"] == what]
    return dict(found)


async def test_a_healthy_set_up_passes_every_check(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.routes["/v1/models"] = {"data": [{"id": "fake"}, {"id": "other"}]}
    mcp = {"servers": {"calc": {"command": [sys.executable, MCP_SERVER, "stdio"]}}}
    path = write_config(tmp_path, fake_llm.base_url, tools={"mcp": mcp})
    result = await check(tmp_path, path)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert f"[ok]   model: {fake_llm.base_url} answered (2 model(s) listed)" in out
    assert "[ok]   model 'fake': listed by the server" in out
    assert "[ok]   model tools: accepts tool definitions" in out
    assert "[ok]   MCP server calc: started; 5 tool(s)" in out
    assert "[ok]   data directory:" in out
    assert "[ok]   web chat address:" in out
    assert "Everything checked is ready." in out
    assert fake_llm.requests[0]["tools"][0]["function"]["name"] == "ping"
    assert not (tmp_path / "data").exists(), "check creates nothing"


async def test_an_endpoint_that_is_down_fails_with_what_to_do(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    path = write_config(tmp_path, down)
    result = await check(tmp_path, path)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert (
        f"[FAIL] model: Cannot reach the model server at {down}: connection refused. "
        "Is the server running?"
    ) in out
    assert "-> start the model server, or set llm.base_url" in out
    assert "1 problem(s) found." in out


async def test_an_unknown_model_fails_and_lists_the_models(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.routes["/v1/models"] = {"data": [{"id": "llama3.2"}, {"id": "qwen2.5"}]}
    fake_llm.responder = lambda body: HTTPError(404)
    path = write_config(tmp_path, fake_llm.base_url, llm={"model": "gpt-5"})
    code, report = await check_json(tmp_path, path)
    assert code == 1
    assert report["ok"] is False
    model = finding(report, "model 'gpt-5'")
    assert model["status"] == "fail"
    assert 'has no model "gpt-5" (HTTP 404); it has: llama3.2, qwen2.5.' in model["detail"]
    assert "set llm.model" in model["fix"]


async def test_a_wrong_api_key_fails_and_is_never_printed(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda body: HTTPError(401)
    path = write_config(tmp_path, fake_llm.base_url, llm={"api_key": "sk-wrong-key-123"})
    result = await check(tmp_path, path)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "refused the API key (HTTP 401); check llm.api_key." in out
    assert "sk-wrong-key-123" not in out + result.stderr.decode()
    assert fake_llm.headers[0]["authorization"] == "Bearer sk-wrong-key-123"


async def test_a_server_that_refuses_tools_is_told(tmp_path: Path, fake_llm: FakeLLM) -> None:
    refusal = '{"error": {"message": "tools param requires --jinja flag"}}'
    fake_llm.responder = lambda body: HTTPError(400, refusal) if body.get("tools") else Reply("OK")
    path = write_config(tmp_path, fake_llm.base_url)
    code, report = await check_json(tmp_path, path)
    assert code == 1
    tools = finding(report, "model tools")
    assert tools["status"] == "fail"
    assert "tools param requires --jinja flag" in tools["detail"]
    assert "--jinja" in tools["fix"]
    assert finding(report, "model")["status"] == "ok"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


async def test_a_busy_web_port_fails(tmp_path: Path, fake_llm: FakeLLM, busy_port: int) -> None:
    path = write_config(tmp_path, fake_llm.base_url, web={"port": busy_port})
    code, report = await check_json(tmp_path, path)
    assert code == 1
    web = finding(report, "web chat address")
    assert web["detail"] == f"127.0.0.1:{busy_port} is already in use by another program"
    assert "web.port" in web["fix"]


async def test_a_busy_metrics_bind_fails(tmp_path: Path, fake_llm: FakeLLM, busy_port: int) -> None:
    path = write_config(tmp_path, fake_llm.base_url, web={"metrics_bind": f"127.0.0.1:{busy_port}"})
    code, report = await check_json(tmp_path, path)
    assert code == 1
    metrics = finding(report, "metrics address")
    assert metrics["detail"] == f"127.0.0.1:{busy_port} is already in use by another program"
    assert "web.metrics_bind" in metrics["fix"]


def read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/sys")  # read-only even for root
    target = tmp_path / "readonly"
    target.mkdir()
    target.chmod(0o500)
    return target


async def test_a_read_only_data_dir_fails(tmp_path: Path, fake_llm: FakeLLM) -> None:
    data_dir = read_only_dir(tmp_path)
    path = write_config(tmp_path, fake_llm.base_url, data_dir=str(data_dir))
    code, report = await check_json(tmp_path, path)
    assert code == 1
    found = finding(report, "data directory")
    assert found["status"] == "fail"
    assert found["detail"].startswith(f"cannot write in {data_dir}:")


async def test_missing_bubblewrap_fails_when_the_sandbox_is_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    path = write_config(tmp_path, fake_llm.base_url, tools={"shell": {"sandbox": "bwrap"}})
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    code, report = await check_json(tmp_path, path, env=env)
    assert code == 1
    found = finding(report, "shell sandbox")
    assert found["status"] == "fail"
    assert "bubblewrap (bwrap) is not installed" in found["detail"]


@pytest.mark.usefixtures("bwrap")
async def test_the_sandbox_check_passes_with_a_working_bubblewrap(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    path = write_config(tmp_path, fake_llm.base_url, tools={"shell": {"sandbox": "bwrap"}})
    code, report = await check_json(tmp_path, path)
    assert finding(report, "shell sandbox")["status"] == "ok", report
    assert code == 0, report


async def test_an_mcp_server_that_does_not_start_fails(tmp_path: Path, fake_llm: FakeLLM) -> None:
    mcp = {"servers": {"broken": {"command": [str(tmp_path / "no-such-server")]}}}
    path = write_config(tmp_path, fake_llm.base_url, tools={"mcp": mcp})
    code, report = await check_json(tmp_path, path)
    assert code == 1
    found = finding(report, "MCP server broken")
    assert found["status"] == "fail"
    assert found["detail"].startswith("did not start:")
    assert "no-such-server" in found["fix"]


async def test_each_fallback_is_checked(tmp_path: Path, fake_llm: FakeLLM) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    fallbacks = [{"base_url": down, "model": "backup"}]
    path = write_config(tmp_path, fake_llm.base_url, llm={"fallbacks": fallbacks})
    code, report = await check_json(tmp_path, path)
    assert code == 1
    assert finding(report, "model")["status"] == "ok"
    assert "connection refused" in finding(report, "fallback 1")["detail"]


async def test_a_bad_config_exits_2_before_probing(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("web: {prot: 1}\n")
    result = await check(tmp_path, tmp_path / "config.yaml")
    assert result.returncode == 2
    assert "web.prot: unknown option" in result.stderr.decode()
