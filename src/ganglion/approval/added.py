"""The rules the owner added by answering "always" to a question: `approvals.yaml` in
the data directory, a file the owner may read, edit and empty (removing a rule: the
owner is asked again), and that no tool may read or write (`ganglion.owned`).

    rules:
    - tool: shell
      command: python3 backup.py
      decision: allow
      added: 2026-12-07 18:30 by @me:example.org (matrix)

Blocking: small file reads and writes; the async callers run them in a worker thread,
one at a time. A file that cannot be read or is not valid is logged and counts as no
rules (the owner is asked, never let through), and is not written over.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from ganglion.config import ApprovalRule
from ganglion.datadir import APPROVALS_FILE
from ganglion.safefs import NotFound, SafePathError, open_dir

__all__ = ["ADDED_HEADER", "AddedRule", "AddedRules"]

log = logging.getLogger(__name__)

MAX_BYTES: Final = 1024 * 1024
ADDED_HEADER: Final = (
    "# Rules Ganglion added when you answered 'always' (Always allow). They are read after\n"
    "# tools.approval.rules in config.yaml; remove one to be asked again.\n"
)


class AddedRule(ApprovalRule):
    """A rule of `approvals.yaml`: `added` says when, by whom and from where."""

    added: str | None = None


class AddedRules:
    """`approvals.yaml` of one data directory, re-read when it changed on disk."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._seen: tuple[int, int] | None = None
        self._rules: list[AddedRule] = []
        self._broken = False

    def load(self) -> list[AddedRule]:
        """The rules as the file holds them now."""
        try:
            with open_dir(self._dir) as directory:
                data, st = directory.read_bytes(APPROVALS_FILE, limit=MAX_BYTES)
        except NotFound:
            self._seen, self._rules, self._broken = None, [], False
            return []
        except (SafePathError, OSError) as exc:
            log.warning("%s is not read (no added rules apply): %s", APPROVALS_FILE, exc)
            self._broken = True
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._seen:
            self._seen = stamp
            self._rules, self._broken = _parse(data)
        return list(self._rules)

    def add(self, rule: AddedRule) -> bool:
        """Add `rule` (not twice); False when the file is broken and left as it is."""
        rules = self.load()
        if self._broken:
            return False
        if any(_same(rule, known) for known in rules):
            return True
        rules.append(rule)
        entries = [r.model_dump(exclude_none=True) for r in rules]
        text = ADDED_HEADER + yaml.safe_dump({"rules": entries}, sort_keys=False)
        with open_dir(self._dir) as directory:
            directory.write_atomic(APPROVALS_FILE, text.encode())
        self._seen = None
        return True


def _same(a: ApprovalRule, b: ApprovalRule) -> bool:
    return (a.tool, a.command, a.path, a.decision) == (b.tool, b.command, b.path, b.decision)


def _parse(data: bytes) -> tuple[list[AddedRule], bool]:
    try:
        loaded: Any = yaml.safe_load(data.decode("utf-8")) or {}
        entries = (loaded.get("rules") or []) if isinstance(loaded, dict) else None
        if not isinstance(entries, list):
            raise ValueError("it must hold `rules:`, a list")
        return [AddedRule.model_validate(entry) for entry in entries], False
    except (ValueError, yaml.YAMLError, ValidationError) as exc:
        log.warning("%s is not valid (no added rules apply until it is): %s", APPROVALS_FILE, exc)
        return [], True
