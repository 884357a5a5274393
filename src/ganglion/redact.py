"""Redaction of secrets in what Ganglion writes about tool calls (log lines, audit records).

Two kinds of secret are hidden:

- the daemon's own: every configured credential value (API keys, tokens, header values),
  replaced wherever it appears, and
- what looks like a credential in the model's arguments: the value of a JSON key or a
  `key=value` / `key: value` pair whose name says secret (password, token, api_key, …),
  `Bearer …` and `Basic …` authorizations, private-key blocks, and the token formats of
  well-known services (OpenAI/Anthropic `sk-…`, GitHub, GitLab, Slack, AWS access keys,
  Matrix `syt_…`).

What a tool returns to the model goes through `known` only: the daemon's own secrets never
reach the model (a config file read, `cat` of a token file), while ordinary content keeps
every character. The logs get both kinds. `known` also catches the simple encodings a
command can turn a secret into in passing (`rev`, `base64`, hex): each secret is hidden
reversed, hex-encoded (either case) and base64-encoded (standard and URL-safe, at each of
the three alignments it can have inside a longer encoded text).

It is a safety net, not a guarantee: a secret with no recognisable shape that the
daemon does not know about cannot be told from any other string.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

from ganglion.config import Config

__all__ = ["REDACTED", "Redactor", "configured_secrets", "encoded_forms"]

REDACTED = "[redacted]"

_SECRET_NAME = r"(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|secret|password|passwd|passphrase|private[_-]?key|client[_-]?secret|authorization|cookie)"
# A name that *ends* in a secret word names a secret (api_key, GITHUB_TOKEN, password);
# one that goes on does not (max_tokens, tokenizer, password_hint).
_SENSITIVE_KEY = re.compile(rf"(?i)^[\w.-]*{_SECRET_NAME}$")
_SENSITIVE_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|password|session")

_PATTERNS = [
    re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S
    ),
    re.compile(r"\b((?i:bearer|basic)|Token)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
        r"|glpat-[A-Za-z0-9_-]{16,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
        r"|syt_[A-Za-z0-9_]{10,})"
    ),
]
# key=value, key: value, "key": "value" and --key value inside free text (a command line).
_ASSIGNMENT = re.compile(
    rf"(?i)(\b[\w.-]*{_SECRET_NAME}[\"']?\s*[=:]\s*[\"']?|--?{_SECRET_NAME}\s+[\"']?)"
    r"([^\s\"'&,;]{4,})"
)
# An ordinary word: what follows "Basic", "token:" or "--password" in prose ("basic
# information", "password: please"), not a credential. After `=` or in quotes a value
# is taken as one whatever it looks like (password=secret).
_WORD = re.compile(r"[A-Za-z][a-z]{0,11}")

# Shorter values are placeholders ("ollama", "none"), not secrets worth hiding everywhere.
MIN_SECRET_LENGTH = 8


def configured_secrets(config: Config) -> list[str]:
    """Every credential value in `config`: API keys and credential headers of each model
    endpoint, credential headers and environment variables of the MCP servers, the
    Matrix access token, the web token."""
    endpoints = config.endpoints()
    found = [e.api_key.get_secret_value() for e in endpoints if e.api_key is not None]
    found += [
        value
        for e in endpoints
        for name, value in e.headers.items()
        if _SENSITIVE_HEADER.search(name)
    ]
    for server in config.tools.mcp.servers.values():
        for name, value in [*server.headers.items(), *server.env.items()]:
            if _SENSITIVE_HEADER.search(name):
                found.append(value.get_secret_value())
    for token in (
        config.matrix.access_token,
        config.matrix.pickle_key,
        config.web.token,
        config.transcription.api_key,
    ):
        if token is not None:
            found.append(token.get_secret_value())
    return found


class Redactor:
    """Hides `secrets` (exact values) and credential-shaped text in strings and JSON."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._forms: list[str] = []
        self.add(*secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def add(self, *secrets: str) -> None:
        """Hide these values too (a token generated at start-up, say)."""
        values = set(self._secrets) | {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(values, key=len, reverse=True)
        forms = {form for secret in values for form in encoded_forms(secret)}
        self._forms = sorted(forms - values, key=len, reverse=True)

    def known(self, value: str) -> str:
        """`value` with the daemon's own secrets (and their simple encodings) hidden, and
        nothing else changed: for what tools return to the model (a config file read, a
        command's output)."""
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        for form in self._forms:
            value = value.replace(form, REDACTED)
        return value

    def text(self, value: str) -> str:
        """`value` with known secrets and credential-shaped text hidden: for logs."""
        value = self.known(value)
        for pattern in _PATTERNS:
            value = pattern.sub(_keep_scheme, value)
        return _ASSIGNMENT.sub(_hide_assigned, value)

    def arguments(self, raw: str) -> str:
        """A tool call's JSON arguments with secrets redacted (as text when not JSON)."""
        try:
            parsed = json.loads(raw)
        except ValueError:
            return self.text(raw)
        return json.dumps(self._value(parsed), ensure_ascii=False)

    def _value(self, value: Any, key: str | None = None) -> Any:
        if key is not None and _SENSITIVE_KEY.match(key) and value not in (None, "", [], {}):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v) for v in value]
        return value


def encoded_forms(secret: str) -> set[str]:
    """What a command easily turns `secret` into: reversed, hex, base64. Base64 text of a
    longer input holds the secret at one of three bit alignments; for each, only the
    characters that depend on the secret's bytes alone are kept."""
    data = secret.encode()
    forms = {secret[::-1], data.hex(), data.hex().upper()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        start = -(-8 * shift // 6)  # the first character made of the secret's bits only
        end = 8 * (shift + len(data)) // 6
        for form in (encoded[start:end], encoded[start:end].translate(_URL_SAFE)):
            forms.add(form)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


_URL_SAFE = str.maketrans("+/", "-_")


def _keep_scheme(match: re.Match[str]) -> str:
    scheme = match.group(1) if match.re.groups else None
    if scheme is None:
        return REDACTED
    if _WORD.fullmatch(match.group(0)[len(scheme) :].strip()):
        return match.group(0)
    return f"{scheme} {REDACTED}"


def _hide_assigned(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    explicit = "=" in name or name.rstrip().endswith(("'", '"'))
    if not explicit and _WORD.fullmatch(value):
        return match.group(0)
    return name + REDACTED
