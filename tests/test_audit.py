"""The tool-call audit: logged with the thread id, stored with the turn, secrets redacted."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from ganglion.config import Config
from ganglion.redact import REDACTED, Redactor, configured_secrets, encoded_forms
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, calling

API_KEY = "llm-key-5f2b9c0e77aa"
ROOM = "web_aaaaaaaaaaaaaaaa"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("curl -H 'Authorization: Bearer abcdefghijklmnop' x", "abcdefghijklmnop"),
        ("export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstu", "sk-proj-abcdefghijklmnopqrstu"),
        ("mysql --password hunter2hunter2 db", "hunter2hunter2"),
        ("git clone https://ghp_abcdefghijklmnopqrstuvwxyz1234@github.com/x", "ghp_abcdefghij"),
        ("token: syt_Z2FuZ2xpb24_abcdefghij_123", "syt_Z2FuZ2xpb24"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNz\n-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNz",
        ),
        (f"echo {API_KEY} | base64", API_KEY),
    ],
)
def test_credentials_in_free_text_are_hidden(text: str, hidden: str) -> None:
    redacted = Redactor([API_KEY]).text(text)
    assert hidden not in redacted and REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "ls -la ~/projects && grep -rn 'token bucket' src/ | head -5",
        # Issue 26 row 9: words after a secret-looking one were hidden.
        "Basic information about the token: everything is fine",
        "The password: please change it tomorrow",
        "Token expired yesterday; the bearer instrument is void",
        "max_tokens: 1024 and tokens=5000, tokenizer: sentencepiece",
        "password_hint: blue",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor([API_KEY]).text(text) == text


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("password=secret", "secret"),
        ('{"password": "letmein"}', "letmein"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("the token: 4f9a8b7c6d5e", "4f9a8b7c6d5e"),
    ],
)
def test_values_that_are_credentials_are_hidden_even_short_ones(text: str, hidden: str) -> None:
    redacted = Redactor().text(text)
    assert hidden not in redacted and REDACTED in redacted


def test_json_arguments_hide_sensitive_keys_at_any_depth() -> None:
    raw = json.dumps(
        {"url": "https://x", "headers": {"X-Api-Key": "abc123456"}, "auth": {"password": "pw1"}}
    )
    redacted = json.loads(Redactor().arguments(raw))
    assert redacted == {
        "url": "https://x",
        "headers": {"X-Api-Key": REDACTED},
        "auth": {"password": REDACTED},
    }
    assert Redactor().arguments("not json password=abcd1234") == f"not json password={REDACTED}"


def test_configured_secrets_are_every_credential_of_the_config() -> None:
    config = Config.model_validate(
        {
            "llm": {
                "api_key": "main-key-1",
                "headers": {"Authorization": "Bearer hdr-1", "X-Title": "Ganglion"},
                "fallbacks": [{"api_key": "fallback-key-2"}],
            },
            "compaction": {"endpoint": {"api_key": "compaction-key-3"}},
            "web": {"token": "web-token-4"},
        }
    )
    found = configured_secrets(config)
    assert sorted(found) == sorted(
        ["main-key-1", "Bearer hdr-1", "fallback-key-2", "compaction-key-3", "web-token-4"]
    )


async def test_tool_calls_are_audited_with_secrets_redacted(
    tmp_path: Path, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = {"path": "notes.txt", "content": f"key is {API_KEY}, password=opensesame1"}
    fake_llm.script(
        Reply(tool_calls=(("write_file", json.dumps(arguments)),)),
        Reply(tool_calls=(("read_file", json.dumps({"path": "missing.txt"})),)),
        Reply("Saved."),
    )
    config = daemon_config(tmp_path, fake_llm.base_url, llm={"api_key": API_KEY})
    caplog.set_level(logging.INFO)
    async with open_daemon(config) as daemon:
        await daemon.say(ROOM, "save my key")
        assert await daemon.collector.final(ROOM) == ["Saved."]
        stored = await daemon.services.store.library.history_page(ROOM)
    audits = [m.meta for m in stored if m.message.role == "tool"]
    assert [(a["tool"], a["ok"]) for a in audits if a] == [
        ("write_file", True),
        ("read_file", False),
    ]
    assert all(a is not None and a["duration_ms"] >= 0 for a in audits)
    written = audits[0]
    assert written is not None
    assert API_KEY not in written["arguments"] and "opensesame1" not in written["arguments"]
    assert "notes.txt" in written["arguments"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tool call")]
    assert len(lines) == 2
    assert lines[0].startswith(f"tool call in {ROOM}: write_file(") and " ok in " in lines[0]
    assert "failed: error: no such file" in lines[1]
    assert not any(
        API_KEY in r.getMessage() or "opensesame1" in r.getMessage() for r in caplog.records
    )
    # The model itself still got the exact arguments and result.
    assert (tmp_path / "notes.txt").read_text() == arguments["content"]


async def test_the_daemons_secrets_never_reach_the_model_through_a_tool(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    (tmp_path / "settings.yaml").write_text(f"llm:\n  api_key: {API_KEY}\n  model: small\n")
    fake_llm.script(
        calling("read_file", path="settings.yaml"),
        calling("shell", command="cat ../settings.yaml; ls ..; cat ../web_token"),
        Reply("I will not show keys."),
    )
    config = daemon_config(tmp_path, fake_llm.base_url, llm={"api_key": API_KEY})
    async with open_daemon(config) as daemon:
        await daemon.say(ROOM, "show me your settings")
        assert await daemon.collector.final(ROOM) == ["I will not show keys."]
        stored = await daemon.services.store.library.history_page(ROOM)
    read = fake_llm.requests[1]["messages"][-1]["content"]
    assert read == f"llm:\n  api_key: {REDACTED}\n  model: small\n"
    shown = fake_llm.requests[2]["messages"][-1]["content"]
    assert f"api_key: {REDACTED}" in shown and "model: small" in shown
    assert not any(API_KEY in (m.message.content or "") for m in stored)


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s[::-1],
        lambda s: s.encode().hex(),
        lambda s: s.encode().hex().upper(),
        lambda s: base64.b64encode(s.encode()).decode(),
        lambda s: base64.b64encode(b"key: " + s.encode() + b"\n").decode(),
        lambda s: base64.b64encode(b"k=" + s.encode()).decode(),
        lambda s: base64.urlsafe_b64encode(b"x" + s.encode()).decode(),
    ],
    ids=["reversed", "hex", "HEX", "base64", "base64 inside", "base64 shifted", "urlsafe"],
)
def test_simple_encodings_of_a_known_secret_are_hidden(encode: Callable[[str], str]) -> None:
    secret = "sk-live-0123456789abcdefghij"
    redactor = Redactor([secret])
    shown = redactor.known(f"output: {encode(secret)} end")
    assert encode(secret) not in shown and REDACTED in shown
    for form in encoded_forms(secret):
        assert form not in shown


def test_encodings_leave_ordinary_text_alone() -> None:
    redactor = Redactor(["sk-live-0123456789abcdefghij"])
    text = "base64 of hello: aGVsbG8= and hex 68656c6c6f"
    assert redactor.known(text) == text
