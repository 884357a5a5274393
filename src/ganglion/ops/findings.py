"""The checklist `ganglion check` prints: its lines (`Finding`) and how they read, on a
terminal or as JSON. Pure, and on the ground floor: every probe (the model, the Matrix
store and identity, the sandbox) makes `Finding`s without knowing the others."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["MARKS", "Finding", "Status", "failed", "render", "render_json"]

Status = Literal["ok", "warn", "fail", "skip"]
MARKS = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the checklist: `what` was checked, `status`, `detail` (what was found)
    and `fix` (what to do about a failure or a warning)."""

    what: str
    status: Status
    detail: str
    fix: str = ""


def failed(findings: Sequence[Finding]) -> bool:
    return any(finding.status == "fail" for finding in findings)


def render(findings: Sequence[Finding]) -> str:
    """The checklist for a terminal: one line per finding, the fix indented below."""
    lines: list[str] = []
    for finding in findings:
        lines.append(f"{MARKS[finding.status]} {finding.what}: {finding.detail}")
        if finding.fix and finding.status in ("fail", "warn"):
            lines.append(f"       -> {finding.fix}")
    bad = sum(finding.status == "fail" for finding in findings)
    lines.append("")
    lines.append(f"{bad} problem(s) found." if bad else "Everything checked is ready.")
    return "\n".join(lines)


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps(
        {"ok": not failed(findings), "checks": [asdict(finding) for finding in findings]},
        indent=2,
    )
