"""`ganglion status` and `/metrics` as an owner and a Prometheus server use them: against
a real `ganglion run` process, after a few real turns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fakellm import FakeLLM, HTTPError, Reply, calling
from tests.support.live import LiveDaemon, free_port, open_live_daemon
from tests.support.process import run_ganglion

pytestmark = pytest.mark.slow

A = "web_aaaaaaaaaaaaaaaa"


async def a_few_turns(live: LiveDaemon, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        Reply("hello"),
        calling("list_dir", path="."),
        Reply("listed"),
        HTTPError(500),
    )
    for text in ("hi", "what is here?", "and now?"):
        await live.turn(A, text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_status_prints_what_the_daemon_is_doing(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        await a_few_turns(live, fake_llm)
        result = await run_ganglion("status", "--config", str(live.config_path), cwd=tmp_path)
        as_json = await run_ganglion(
            "status", "--json", "--config", str(live.config_path), cwd=tmp_path
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert out.startswith("Ganglion ")
    for actor in ("threads", "reminders", "heartbeat", "system", "web"):
        assert f"\n  {actor} " in out, actor
    assert "Turns: 3 started, 2 answered, 1 failed" in out
    assert "Tool calls: list_dir ok 1" in out
    assert f"  {A}" in out
    assert "errors: server_error 1" in out
    assert "tokens: 30 in, 15 out" in out
    assert "\nUsage today (" in out and "\n  owner          30 in, 15 out, 3 calls" in out
    assert "\nHeartbeat: 0 beats; reviews none; skipped none; 0 tokens" in out
    assert "\nApprovals: 0 waiting for you; answered so far: none yet" in out
    status = json.loads(as_json.stdout)
    assert status["turns"]["failed"] == 1
    assert status["model"]["requests"] == 4
    assert status["usage"]["sources"]["owner"]["tokens_in"] == 30
    assert status["usage"]["sources"]["owner"]["estimated_calls"] == 0
    assert status["approvals"] == {"pending": [], "outcomes": {}}
    assert {a["name"]: a["state"] for a in status["actors"]}["web"] == "running"
    assert all(a["restarts"] == 0 for a in status["actors"])
    assert "Event loop" not in out and status["loop"] is None  # logging.event_loop_stats


async def test_status_without_a_running_daemon_exits_3(tmp_path: Path) -> None:
    assert (await run_ganglion("init", cwd=tmp_path)).returncode == 0
    result = await run_ganglion("status", cwd=tmp_path)
    assert result.returncode == 3
    assert "no daemon is running at http://127.0.0.1:8080" in result.stderr.decode()


async def test_status_with_a_wrong_token_is_refused(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
        result = await run_ganglion(
            "status",
            "--config",
            str(live.config_path),
            cwd=tmp_path,
            env={**env, "GANGLION_WEB_TOKEN": "wrong"},
        )
    assert result.returncode == 3
    assert "HTTP 401" in result.stderr.decode()


async def test_metrics_move_with_turns_and_need_the_token(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    stats = {"event_loop_stats": True}
    async with (
        open_live_daemon(tmp_path, fake_llm.base_url, logging=stats) as live,
        httpx.AsyncClient(base_url=live.base) as http,
    ):
        before = samples((await http.get("/metrics", headers=auth(live))).text)
        await a_few_turns(live, fake_llm)
        reply = await http.get("/metrics", headers=auth(live))
        refused = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        shown = await run_ganglion("status", "--config", str(live.config_path), cwd=tmp_path)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = samples(reply.text)
    assert before[("ganglion_turns_total", (("outcome", "answered"),))] == 0
    assert after[("ganglion_turns_total", (("outcome", "answered"),))] == 2
    assert after[("ganglion_turns_total", (("outcome", "failed"),))] == 1
    assert after[("ganglion_turn_duration_seconds_count", ())] == 3
    assert after[("ganglion_tool_calls_total", (("outcome", "ok"), ("tool", "list_dir")))] == 1
    assert after[("ganglion_model_requests_total", ())] == 4
    assert after[("ganglion_model_errors_total", (("kind", "server_error"),))] == 1
    assert after[("ganglion_model_tokens_total", (("direction", "in"),))] == 30
    assert after[("ganglion_model_tokens_total", (("direction", "out"),))] == 15
    today = "ganglion_usage_tokens_today"
    assert after[(today, (("direction", "in"), ("source", "owner")))] == 30
    assert after[(today, (("direction", "out"), ("source", "owner")))] == 15
    assert after[("ganglion_actor_restarts_total", (("actor", "web"),))] == 0
    assert after[("ganglion_approvals_pending", ())] == 0
    assert ("ganglion_mailbox_depth", (("actor", "threads"),)) in after
    assert after[("ganglion_reminder_slots_total", (("state", "missed"),))] == 0
    assert after[("ganglion_heartbeat_beats_total", ())] == 0
    assert after[("ganglion_heartbeat_reviews_total", (("outcome", "spoke"),))] == 0
    assert ("ganglion_heartbeat_tokens_total", ()) in after
    steps = after[("ganglion_event_loop_step_seconds_count", ())]
    assert steps > before[("ganglion_event_loop_step_seconds_count", ())]
    assert after[("ganglion_event_loop_step_seconds_bucket", (("le", "+Inf"),))] == steps
    assert after[("ganglion_event_loop_longest_step_seconds", ())] > 0
    assert "\nEvent loop: " in shown.stdout.decode()
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert "ganglion_" not in refused.text


async def test_metrics_bind_serves_metrics_without_the_token_on_loopback_only(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    port = free_port()
    async with (
        open_live_daemon(tmp_path, fake_llm.base_url, web={"metrics_bind": f"127.0.0.1:{port}"}),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        scraped = await http.get("/metrics")
        rebound = await http.get("/metrics", headers={"Host": f"evil.example:{port}"})
        status = await http.get("/api/status")
    assert scraped.status_code == 200
    assert samples(scraped.text)[("ganglion_actor_up", (("actor", "metrics"),))] == 1
    assert (rebound.status_code, status.status_code) == (421, 404)


async def test_a_made_up_tool_name_never_becomes_a_metric_label(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    # Issue 26 row 6: the tokenless /metrics was a channel from the model to any local
    # user, and an unbounded label set.
    made_up = 'evil_tool_name_<script>_"quote'
    port = free_port()
    fake_llm.script(calling(made_up, x=1), Reply("done"))
    async with (
        open_live_daemon(
            tmp_path, fake_llm.base_url, web={"metrics_bind": f"127.0.0.1:{port}"}
        ) as live,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        await live.turn(A, "call it")
        scraped = await http.get("/metrics")
    assert "evil" not in scraped.text and "script" not in scraped.text
    found = samples(scraped.text)
    assert found[("ganglion_tool_calls_total", (("outcome", "error"), ("tool", "unknown")))] == 1


def auth(live: LiveDaemon) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.token}"}
