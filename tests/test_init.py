"""`ganglion init` as a user runs it: a subprocess in a fresh directory."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import trio

from ganglion.config import load_config
from ganglion.ops.setup import config_template
from tests.support.process import run_ganglion

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[1] / "config.yaml.example"


def test_the_config_init_writes_is_config_yaml_example() -> None:
    assert config_template() == EXAMPLE.read_text(encoding="utf-8")


async def test_init_sets_up_a_directory_and_prints_the_next_steps(tmp_path: Path) -> None:
    result = await run_ganglion("init", "site", cwd=tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    site = tmp_path / "site"
    assert (site / "config.yaml").read_text() == EXAMPLE.read_text()
    for name in ("BASE_PROMPT.txt", "MEMORIES.txt", "HEARTBEATS.txt", "skills", "scripts"):
        assert (site / "data" / name).exists(), name
    token_file = site / "data" / "web_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert f"http://127.0.0.1:8080/#token={token}" in out
    assert f"ganglion check --config {site / 'config.yaml'}" in out
    assert f"created {site / 'config.yaml'}" in out
    assert not (site / "ganglion.service").exists()


async def test_init_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    assert (await run_ganglion("init", cwd=tmp_path)).returncode == 0
    mine = "# mine\nllm: {model: qwen2.5}\n"
    (tmp_path / "config.yaml").write_text(mine)
    (tmp_path / "data" / "MEMORIES.txt").write_text("remember this\n")
    token = (tmp_path / "data" / "web_token").read_text()
    result = await run_ganglion("init", "--systemd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "config.yaml").read_text() == mine
    assert (tmp_path / "data" / "MEMORIES.txt").read_text() == "remember this\n"
    assert (tmp_path / "data" / "web_token").read_text() == token
    assert (
        f"kept    {tmp_path / 'config.yaml'} (it exists; not overwritten)" in result.stdout.decode()
    )
    unit = tmp_path / "ganglion.service"
    assert unit.exists()
    unit.write_text("# edited\n")
    again = await run_ganglion("init", "--systemd", cwd=tmp_path)
    assert again.returncode == 0
    assert unit.read_text() == "# edited\n"


async def test_init_systemd_writes_a_notify_unit_for_this_directory(tmp_path: Path) -> None:
    result = await run_ganglion("init", "--systemd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    unit = (tmp_path / "ganglion.service").read_text()
    config, _ = load_config(tmp_path / "config.yaml")
    options = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert options["Type"] == "notify"
    assert options["Restart"] == "on-failure"
    assert options["RestartPreventExitStatus"] == "2"
    assert options["ExecStart"].endswith(f"-m ganglion run --config {tmp_path / 'config.yaml'}")
    assert int(options["TimeoutStopSec"]) > config.shutdown.grace_seconds
    assert str(config.data_dir) in options["ReadWritePaths"].split()
    assert "$" not in unit.replace("$USER", "")
    assert f"systemctl --user link {tmp_path / 'ganglion.service'}" in result.stdout.decode()


async def test_init_refuses_to_use_a_broken_existing_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("web: {prot: 1}\n")
    result = await run_ganglion("init", cwd=tmp_path)
    assert result.returncode == 2
    assert "web.prot: unknown option" in result.stderr.decode()
    assert (tmp_path / "config.yaml").read_text() == "web: {prot: 1}\n"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
async def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert (await run_ganglion("init", "--systemd", cwd=tmp_path)).returncode == 0
    with trio.fail_after(60):
        result = await trio.run_process(
            ["systemd-analyze", "verify", str(tmp_path / "ganglion.service")],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert b"ganglion.service" not in result.stderr, result.stderr.decode()
