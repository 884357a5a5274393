"""The config file as a file: where it is, its YAML, the secrets from the environment,
and the little the client commands need of it. No pydantic: `ganglion chat`, `status`
and `reminders` read their daemon's address here in milliseconds, where validating the
whole configuration (`ganglion.config`) would take a third of their start.

    GANGLION_LLM_API_KEY           llm.api_key
    GANGLION_MATRIX_ACCESS_TOKEN   matrix.access_token
    GANGLION_MATRIX_PASSWORD       matrix.password
    GANGLION_MATRIX_RECOVERY_KEY   matrix.recovery_key
    GANGLION_TRANSCRIPTION_API_KEY transcription.api_key
    GANGLION_WEB_TOKEN             web.token

`plain_client_view` reads `data_dir` and `web.host`/`port`/`token` with the defaults and
path rules of `ganglion.config` (a test holds the two to the same answers). Anything it
cannot vouch for it leaves to `ganglion.config.client_view`, which validates the whole
file (`load_config`), whose error names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ganglion.errors import StartupError

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ENV_SECRETS",
    "ClientView",
    "ConfigError",
    "plain_client_view",
    "read_config_file",
]

DEFAULT_CONFIG_NAME = "config.yaml"

ENV_SECRETS: Mapping[str, tuple[str, str]] = {
    "GANGLION_LLM_API_KEY": ("llm", "api_key"),
    "GANGLION_MATRIX_ACCESS_TOKEN": ("matrix", "access_token"),
    "GANGLION_MATRIX_PASSWORD": ("matrix", "password"),
    "GANGLION_MATRIX_RECOVERY_KEY": ("matrix", "recovery_key"),
    "GANGLION_TRANSCRIPTION_API_KEY": ("transcription", "api_key"),
    "GANGLION_WEB_TOKEN": ("web", "token"),
}

# The defaults `ganglion.config` gives these fields.
DEFAULT_DATA_DIR = "data"
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8080


class ConfigError(StartupError):
    """A configuration that cannot be used; the message is meant for the operator."""


def read_config_file(
    path: Path | None, environ: Mapping[str, str]
) -> tuple[Path | None, dict[str, Any]]:
    """The file to read (`path`, else `./config.yaml` when it exists, else None for the
    defaults) and its options, the environment's secrets merged in.

    Error handling: raises `ConfigError` for an unreadable file or invalid YAML.
    """
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = Path(DEFAULT_CONFIG_NAME)
    raw = _read_yaml(path) if path is not None else {}
    return path, _apply_env_secrets(raw, environ)


@dataclass(frozen=True, slots=True)
class ClientView:
    """Where a client finds the running daemon."""

    data_dir: Path
    web_host: str
    web_port: int
    web_token: str | None  # web.token (or GANGLION_WEB_TOKEN); None: the data dir's file


def plain_client_view(path: Path | None, environ: Mapping[str, str]) -> ClientView | None:
    """The daemon's address as `load_config` would find it in `path`, when the file says
    it plainly; None when only the full validation can tell (`ganglion.config.client_view`).

    Error handling: raises `ConfigError` for an unreadable file or invalid YAML.
    """
    path, raw = read_config_file(path, environ)
    web = raw.get("web", {})
    data_dir = raw.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(web, dict):
        return None
    host = web.get("host", DEFAULT_WEB_HOST)
    port = web.get("port", DEFAULT_WEB_PORT)
    token = web.get("token")
    plain = (
        isinstance(data_dir, str)
        and data_dir != ""
        and isinstance(host, str)
        and type(port) is int
        and 0 <= port <= 65535
        and (token is None or isinstance(token, str))
    )
    if not plain:
        return None
    base = path.resolve().parent if path is not None else Path.cwd()
    return ClientView((base / data_dir).resolve(), host, port, token)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: YAML syntax error{at}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of options, not a {type(raw).__name__}"
        )
    return raw


def _apply_env_secrets(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(raw)
    for var, (section, key) in ENV_SECRETS.items():
        value = environ.get(var)
        if not value:
            continue
        current = merged.get(section)
        if section == "matrix" and not isinstance(current, dict):
            continue  # the token alone does not turn Matrix on: the section does
        part = dict(current) if isinstance(current, dict) else {}
        part[key] = value
        merged[section] = part
    return merged
