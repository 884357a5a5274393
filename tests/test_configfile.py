"""The client commands' view of the configuration (no pydantic) agrees with the daemon's."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganglion.config import client_view, load_config
from ganglion.configfile import ClientView, ConfigError

TOKEN = "Kq3v8ZpL1xWm4TnB7cYd2RfG9hJs5UaE6oIw0yQe"  # a token strong enough to expose


def full_view(path: Path | None, environ: dict[str, str]) -> ClientView:
    config, _ = load_config(path, environ=environ)
    token = config.web.token.get_secret_value() if config.web.token is not None else None
    return ClientView(config.data_dir, config.web.host, config.web.port, token)


@pytest.mark.parametrize(
    ("text", "environ"),
    [
        (None, {}),
        ("", {}),
        ("llm: {model: qwen}\n", {}),
        ("data_dir: state\nweb: {port: 9000}\n", {}),
        ("data_dir: ../elsewhere/data\n", {}),
        (f"web: {{host: 0.0.0.0, port: 0, token: {TOKEN}}}\n", {}),
        ("web: {host: '::1'}\n", {"GANGLION_WEB_TOKEN": TOKEN}),
        (f"web: {{token: {TOKEN}}}\n", {"GANGLION_WEB_TOKEN": "from-the-environment"}),
    ],
)
def test_the_client_finds_the_daemon_where_the_daemon_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, environ: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = None
    if text is not None:
        path = tmp_path / "conf" / "config.yaml"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
    assert client_view(path, environ) == full_view(path, environ)


@pytest.mark.parametrize(
    "text",
    ["web: {port: high}\n", "web: [1]\n", "data_dir: 5\n", "web: {port: 70000}\n"],
)
def test_what_the_client_cannot_vouch_for_gets_the_daemons_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as full:
        load_config(path, environ={})
    with pytest.raises(ConfigError) as client:
        client_view(path, {})
    assert str(client.value) == str(full.value)


def test_a_config_file_that_is_not_yaml_is_refused_alike(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("web: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        client_view(path, {})
