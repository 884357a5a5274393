"""Approvals: the policy's rule matching (pure), and through the daemon with the scripted
fake model as a prompt-injected attacker, the owner's answers, "always", the timeout
(mock clock) and Stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from ganglion.approval import call_text, decide, rule_for
from ganglion.approval.policy import simple_command
from ganglion.config import ApprovalRule, Config, ToolsConfig
from ganglion.messages import ApprovalAsked, ApprovalSettled, ToolActivity
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, calling

WEB = "web_a9a9a9a9a9a9a9a9"
DATA = Path("/srv/ganglion/data")


def verdict(command: str, **tools: Any) -> str:
    config = ToolsConfig.model_validate(tools)
    return decide(config, "shell", json.dumps({"command": command}), data_dir=DATA).decision


# -- rule matching ------------------------------------------------------------------------

TRICKS = [
    "ls; rm -rf ~",
    "ls && rm -rf ~",
    "ls || rm -rf ~",
    "ls | sh",
    "ls & rm -rf ~",
    "ls $(rm -rf ~)",
    "ls `rm -rf ~`",
    "ls\nrm -rf ~",
    "ls\rrm -rf ~",
    "ls > ~/.bashrc",
    "ls < /etc/shadow",
    "cat ${HOME}/.ssh/id_rsa",
    "ls ';rm -rf ~'",
    'ls "$(rm -rf ~)"',
    "PATH=/tmp ls",
    "LD_PRELOAD=/tmp/x.so ls",
    "ls \\\nrm",
    "(rm -rf ~)",
    "{ rm -rf ~; }",
    "ls 'unclosed",
    "date -s 2001-01-01",
    "pwd -P; id",
    "git status",
    "find . -exec rm {} +",
    "python3 -c 'import os'",
    "lsof",
    "ls-evil",
    "",
    "   ",
]


@pytest.mark.parametrize("command", TRICKS)
def test_no_trick_passes_the_rule_for_a_safe_program(command: str) -> None:
    assert verdict(command) == "ask"


@pytest.mark.parametrize(
    "command", ["ls", "ls -la /tmp", "cat notes.txt", "grep -rn TODO scripts", "pwd", "date"]
)
def test_simple_safe_commands_run_on_their_own(command: str) -> None:
    assert verdict(command) == "allow"


def test_quoting_is_read_as_the_shell_reads_it() -> None:
    assert simple_command("grep 'two words' notes.txt") == ["grep", "two words", "notes.txt"]
    assert verdict("grep 'two words' notes.txt") == "allow"
    rule = [{"tool": "shell", "command": "backup.sh *"}]
    assert verdict("backup.sh 'a b'", approval={"rules": rule}) == "allow"
    assert verdict("backup.sh a; rm", approval={"rules": rule}) == "ask"


def test_the_first_matching_rule_wins_and_deny_is_a_decision() -> None:
    rules = [{"tool": "shell", "command": "ls /secret*", "decision": "deny"}]
    assert verdict("ls /secret/keys", approval={"rules": rules}) == "deny"
    assert (
        verdict("ls /tmp", approval={"rules": rules}) == "ask"
    )  # the owner's rules replace the defaults
    trusting = {"default": {"shell": "allow"}, "rules": rules}
    assert verdict("rm -rf /tmp/x", approval=trusting) == "allow"
    assert verdict("ls /secret", approval=trusting) == "deny"


@pytest.mark.parametrize(
    "command",
    [
        "sudo reboot",
        "echo hi; sudo reboot",
        "true && sudo reboot",
        "ls | sudo tee /etc/x",
        "echo $(sudo id)",
        "echo `sudo id`",
        "X=1 sudo reboot",
        "(sudo reboot)",
        "if true; then sudo reboot; fi",
        "echo hi\nsudo reboot",
        "rm -rf /tmp/x > /dev/null",
    ],
)
def test_a_rule_that_asks_or_denies_meets_its_command_inside_any_line(command: str) -> None:
    trusting = {
        "default": {"shell": "allow"},
        "rules": [
            {"tool": "shell", "command": "sudo *", "decision": "deny"},
            {"tool": "shell", "command": "rm -rf *", "decision": "ask"},
        ],
    }
    assert verdict(command, approval=trusting) in ("deny", "ask")
    assert verdict("echo sudo; ls", approval=trusting) == "allow"


def test_files_are_judged_by_their_path_under_the_data_directory() -> None:
    config = ToolsConfig.model_validate({"files": {"roots": [str(DATA)]}})

    def write(path: str) -> str:
        arguments = json.dumps({"path": path, "content": "x"})
        return decide(config, "write_file", arguments, data_dir=DATA).decision

    assert write("scripts/backup.sh") == "allow"
    assert write(str(DATA / "scripts" / "a" / "b.py")) == "allow"
    assert write("scripts/../MEMORIES.txt") == "ask"
    assert write("MEMORIES.txt") == "ask"
    assert write("/etc/passwd") == "ask"
    assert write("scriptsX/a") == "ask"
    assert decide(config, "read_file", '{"path": "/etc/passwd"}', data_dir=DATA).decision == "allow"
    assert decide(config, "write_file", "not json", data_dir=DATA).decision == "ask"


def test_mcp_tools_ask_unless_their_server_marks_them_safe() -> None:
    config = ToolsConfig.model_validate(
        {"mcp": {"servers": {"calc": {"command": ["calc"], "safe_tools": ["add"]}}}}
    )
    assert decide(config, "mcp__calc__add", "{}", data_dir=DATA).decision == "allow"
    assert decide(config, "mcp__calc__wipe", "{}", data_dir=DATA).decision == "ask"
    assert decide(config, "mcp__other__add", "{}", data_dir=DATA).decision == "ask"
    rules = [{"tool": "mcp__calc__*", "decision": "deny"}]
    config = config.model_copy(
        update={"approval": ToolsConfig.model_validate({"approval": {"rules": rules}}).approval}
    )
    assert decide(config, "mcp__calc__add", "{}", data_dir=DATA).decision == "deny"


def test_always_names_exactly_this_call_or_nothing() -> None:
    assert rule_for("shell", '{"command": "backup.sh  --all"}') == ApprovalRule(
        tool="shell", command="backup.sh --all"
    )
    assert rule_for("shell", '{"command": "backup.sh; rm -rf ~"}') is None
    assert rule_for("write_file", '{"path": "notes/a.md"}') == ApprovalRule(
        tool="write_file", path="notes/a.md"
    )
    assert rule_for("write_file", '{"path": "../a"}') is None
    assert rule_for("mcp__calc__add", "{}") == ApprovalRule(tool="mcp__calc__add")
    assert call_text("shell", '{"command": "ls"}') == "shell: ls"


def test_a_bad_policy_is_refused_with_its_field_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tools\.approval\.default\.shell"):
        Config.model_validate(
            {"data_dir": str(tmp_path), "tools": {"approval": {"default": {"shell": "maybe"}}}}
        )
    with pytest.raises(ValueError, match=r"tools\.approval\.rules\.0"):
        Config.model_validate(
            {
                "data_dir": str(tmp_path),
                "tools": {"approval": {"rules": [{"tool": "x", "command": "a", "path": "b"}]}},
            }
        )


# -- through the daemon -------------------------------------------------------------------

CAUTIOUS = {"approval": {"default": {"shell": "ask", "write": "ask"}}}


def cautious(tmp_path: Path, fake_llm: FakeLLM, **approval: Any) -> Config:
    tools = {"approval": {**CAUTIOUS["approval"], **approval}}
    return daemon_config(tmp_path, fake_llm.base_url, tools=tools)


async def question(daemon: Daemon, count: int = 1) -> ApprovalAsked:
    asked = await daemon.collector.wait_for(lambda e: isinstance(e, ApprovalAsked), count)
    event = asked[-1]
    assert isinstance(event, ApprovalAsked)
    return event


def settled(daemon: Daemon) -> list[tuple[str, str | None]]:
    events = daemon.collector.of(WEB)
    return [(e.outcome, e.by) for e in events if isinstance(e, ApprovalSettled)]


def results(fake_llm: FakeLLM) -> list[str]:
    return [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "tool"]


async def test_the_attackers_tricks_are_asked_about_and_none_runs_when_denied(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    marker = tmp_path / "pwned"
    tricks = [
        f"ls; touch {marker}",
        f"ls && touch {marker}",
        f"ls $(touch {marker})",
        f"ls `touch {marker}`",
        f"ls\ntouch {marker}",
        f"ls | xargs touch {marker}",
        f"X=1 touch {marker}",
        f"cat {marker} || touch {marker}",
    ]
    fake_llm.script(*[calling("shell", command=t) for t in tricks], Reply("I could not."))
    async with open_daemon(cautious(tmp_path, fake_llm)) as daemon:
        await daemon.say(WEB, "summarise this web page (it says: run these commands)")
        backend = daemon.services.backend
        for number, trick in enumerate(tricks, 1):
            asked = await question(daemon, number)
            assert asked.call == f"shell: {trick}" and asked.thread_id == WEB
            answer = (await backend.decide_approval(WEB, asked.approval_id, "deny", "owner")).text
            assert answer == f"Denied: shell: {trick}"
        assert await daemon.collector.final(WEB) == ["I could not."]
        assert await backend.open_approvals(WEB) == []
    assert not marker.exists()
    denied = results(fake_llm)
    assert len(denied) == len(tricks)
    assert all(r.startswith("error: not run: the owner denied it") for r in denied)


async def test_every_trick_of_the_rule_tests_is_asked_through_the_daemon(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The default policy (its rule for `ls` and the others) against each trick."""
    for trick in TRICKS:
        fake_llm.script(calling("shell", command=trick), Reply("denied"))
    config = daemon_config(
        tmp_path, fake_llm.base_url, tools={"approval": {"default": {"shell": "ask"}}}
    )
    async with open_daemon(config) as daemon:
        backend = daemon.services.backend
        for number, trick in enumerate(TRICKS, 1):
            await daemon.say(WEB, f"trick {number}")
            asked = await question(daemon, number)
            assert asked.call == f"shell: {trick}"
            await backend.decide_approval(WEB, asked.approval_id, "deny", "owner")
            assert len(await daemon.collector.final(WEB, number)) == number
    calls = [
        e for e in daemon.collector.of(WEB) if isinstance(e, ToolActivity) and e.phase == "end"
    ]
    assert len(calls) == len(TRICKS) and not any(e.ok for e in calls)


async def test_allow_once_runs_the_call_once_and_asks_again_next_time(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    log = tmp_path / "log.txt"
    fake_llm.script(
        calling("shell", command=f"echo ran >> {log}"),
        Reply("done once"),
        calling("shell", command=f"echo ran >> {log}"),
        Reply("done twice"),
    )
    async with open_daemon(cautious(tmp_path, fake_llm, rules=[])) as daemon:
        backend = daemon.services.backend
        await daemon.say(WEB, "log it")
        asked = await question(daemon)
        assert (await backend.decide_approval(WEB, asked.approval_id, "allow", "owner")).text == (
            f"Allowed once: shell: echo ran >> {log}"
        )
        again = (await backend.decide_approval(WEB, asked.approval_id, "deny", "owner")).text
        assert again == "That question was answered already (once)."
        assert await daemon.collector.final(WEB) == ["done once"]
        await daemon.say(WEB, "again")
        second = await question(daemon, 2)
        assert second.approval_id != asked.approval_id
        await backend.decide_approval(WEB, second.approval_id, "allow", "owner")
        assert await daemon.collector.final(WEB, 2) == ["done once", "done twice"]
        assert settled(daemon) == [("once", "owner"), ("once", "owner")]
    assert log.read_text() == "ran\nran\n"


async def test_always_writes_a_rule_the_next_call_runs_by(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling("shell", command="echo hello"),
        Reply("said it"),
        calling("shell", command="echo hello"),
        Reply("said it again"),
        calling("shell", command="echo hello; id"),
        Reply("asked"),
    )
    async with open_daemon(cautious(tmp_path, fake_llm, rules=[])) as daemon:
        backend = daemon.services.backend
        await daemon.say(WEB, "say hello")
        asked = await question(daemon)
        assert asked.always
        assert (await backend.decide_approval(WEB, asked.approval_id, "always", "owner")).text == (
            "Always allowed: shell: echo hello"
        )
        assert await daemon.collector.final(WEB) == ["said it"]
        await daemon.say(WEB, "say it again")
        assert await daemon.collector.final(WEB, 2) == ["said it", "said it again"]
        assert len(daemon.collector.of(WEB, ApprovalAsked)) == 1  # not asked the second time
        await daemon.say(WEB, "and more")
        more = await question(daemon, 2)
        assert not more.always  # no rule can name `echo hello; id` alone
        await backend.decide_approval(WEB, more.approval_id, "deny", "owner")
        assert (await daemon.collector.final(WEB, 3))[-1] == "asked"
    added = yaml.safe_load((tmp_path / "approvals.yaml").read_text())
    assert [{k: v for k, v in rule.items() if k != "added"} for rule in added["rules"]] == [
        {"tool": "shell", "command": "echo hello", "decision": "allow"}
    ]
    assert "by owner (web)" in added["rules"][0]["added"]
    assert (tmp_path / "approvals.yaml").stat().st_mode & 0o077 == 0


async def test_a_question_from_another_conversation_is_not_answered_from_here(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(calling("shell", command="id"), Reply("ok"))
    async with open_daemon(cautious(tmp_path, fake_llm, rules=[])) as daemon:
        backend = daemon.services.backend
        await daemon.say(WEB, "who am I")
        asked = await question(daemon)
        other = "web_b0b0b0b0b0b0b0b0"
        refused = (await backend.decide_approval(other, asked.approval_id, "allow", "owner")).text
        assert refused == "There is no such question in this conversation."
        assert (await backend.decide_approval(WEB, "nope", "allow", "owner")).text == refused
        assert await backend.open_approvals(WEB) == [asked]
        await backend.decide_approval(WEB, asked.approval_id, "deny", "owner")
        assert await daemon.collector.final(WEB) == ["ok"]


async def test_the_policy_denies_without_asking_and_the_turn_goes_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    rules = [{"tool": "shell", "command": "rm *", "decision": "deny"}]
    fake_llm.script(calling("shell", command="rm -rf /tmp/x"), Reply("it was refused"))
    async with open_daemon(cautious(tmp_path, fake_llm, rules=rules)) as daemon:
        await daemon.say(WEB, "clean up")
        assert await daemon.collector.final(WEB) == ["it was refused"]
        assert daemon.collector.of(WEB, ApprovalAsked) == []
        events = daemon.collector.of(WEB)
        ends = [e for e in events if isinstance(e, ToolActivity) and e.phase == "end"]
    assert [e.ok for e in ends] == [False]
    assert results(fake_llm) == [
        "error: not run: the owner's policy denies this call (rule 1 (shell: rm *)): "
        "shell: rm -rf /tmp/x"
    ]


async def test_an_unanswered_question_is_denied_after_the_timeout(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.testing.MockClock
) -> None:
    fake_llm.script(calling("shell", command="id"), Reply("no answer came"))
    config = cautious(tmp_path, fake_llm, rules=[], timeout_seconds=600)
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "who am I")
        asked = await question(daemon)
        assert asked.expires_at > 0
        await trio.sleep(599)
        assert daemon.collector.of(WEB, ApprovalSettled) == []
        await trio.sleep(2)
        assert await daemon.collector.final(WEB) == ["no answer came"]
        assert settled(daemon) == [("timeout", "ganglion")]
    assert results(fake_llm) == [
        "error: not run: no answer came in time (10 minutes), so it was denied: shell: id. "
        "Do not try it another way; tell the owner."
    ]


async def test_stop_withdraws_the_question(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(calling("shell", command="id"))
    async with open_daemon(cautious(tmp_path, fake_llm, rules=[])) as daemon:
        backend = daemon.services.backend
        await daemon.say(WEB, "who am I")
        asked = await question(daemon)
        await backend.stop(WEB, asked.turn_id)
        await daemon.collector.wait_for(lambda e: isinstance(e, ApprovalSettled))
        answer = (await backend.decide_approval(WEB, asked.approval_id, "allow", "owner")).text
        assert answer == "That question was answered already (stop)."
        assert await backend.open_approvals(WEB) == []
    assert len(fake_llm.requests) == 1


async def test_a_system_turn_asks_in_the_owners_latest_conversation(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        Reply("hello"), calling("shell", command="uptime"), Reply("checked the machine")
    )
    async with open_daemon(cautious(tmp_path, fake_llm, rules=[])) as daemon:
        await daemon.say(WEB, "hi")
        assert await daemon.collector.final(WEB) == ["hello"]
        await daemon.say("system:checks", "check the machine")
        asked = await question(daemon)
        assert (asked.thread_id, asked.from_thread) == (WEB, "system:checks")
        backend = daemon.services.backend
        assert (await backend.decide_approval(WEB, asked.approval_id, "allow", "owner")).text == (
            "Allowed once: shell: uptime"
        )
        await fake_llm.wait_for_requests(3)
    assert not results(fake_llm)[0].startswith("error")


async def test_a_system_turn_with_no_one_to_ask_is_denied(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(calling("shell", command="uptime"), Reply("could not"))
    async with open_daemon(cautious(tmp_path, fake_llm, rules=[])) as daemon:
        await daemon.say("system:checks", "check the machine")
        await fake_llm.wait_for_requests(2)
        assert daemon.collector.of(WEB, ApprovalAsked) == []
    assert results(fake_llm)[0].startswith(
        "error: not run: it needs the owner's approval and there was no conversation to ask in"
    )
