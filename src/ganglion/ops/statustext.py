"""The text `ganglion status` prints for a snapshot of `/api/status` (`ops.status`).

Pure and light: the client command imports this and httpx, nothing of the daemon.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["render"]


def render(status: dict[str, Any]) -> str:
    """The text `ganglion status` prints for a snapshot."""
    lines = [
        f"Ganglion {status['version']}, up {_duration(status['uptime_seconds'])}"
        + (" (draining)" if status["draining"] else ""),
        "",
        "Supervision tree (root):",
    ]
    for actor in status["actors"]:
        lines.append(
            f"  {actor['name']:<16} {actor['state']:<10} restarts {actor['restarts']:<3} "
            f"mailbox {actor['mailbox']}/{actor['capacity']}"
        )
    threads = status["threads"]
    lines += [
        "",
        f"Threads: {threads['live']} live, {threads['spawned']} started, "
        f"{threads['passivated']} passivated, {threads['restarts']} restarts",
    ]
    now = time.time()
    for thread in threads["recent"][:10]:
        ago = _duration(now - thread["last_activity"])
        lines.append(f"  {thread['thread_id']:<40} last activity {ago} ago")
    turns = status["turns"]
    finished = turns["answered"] + turns["failed"]
    mean = f", {turns['latency_seconds'] / finished:.1f} s on average" if finished else ""
    lines += [
        "",
        f"Turns: {turns['started']} started, {turns['answered']} answered, "
        f"{turns['failed']} failed{mean}",
    ]
    if turns["system"]:
        system = ", ".join(f"{name} {n}" for name, n in sorted(turns["system"].items()))
        lines.append(f"System turns (heartbeat reviews, system reminders): {system}")
    if status["tools"]:
        calls = ", ".join(f"{t['tool']} {t['outcome']} {t['calls']}" for t in status["tools"])
        lines.append(f"Tool calls: {calls}")
    model = status["model"]
    errors = ", ".join(f"{kind} {n}" for kind, n in sorted(model["errors"].items())) or "none"
    answered = model["answered"]
    latency = f", {model['latency_seconds'] / answered:.1f} s on average" if answered else ""
    lines += [
        "",
        f"Model {model['model']} at {model['endpoint']}:",
        f"  {model['requests']} requests, {answered} answers{latency}, "
        f"{model['retries']} retries, {model['fallbacks_used']} fallbacks",
        f"  errors: {errors}",
        f"  tokens: {model['tokens_in']:,} in, {model['tokens_out']:,} out",
    ]
    for name, named in model.get("models", {}).items():
        chosen = sum(1 for choice in model.get("chosen", {}).values() if choice == name)
        lines.append(
            f"  /model {name}: {named['model']} at {named['endpoint']} "
            f"({chosen} conversation{'s' if chosen != 1 else ''})"
        )
    if status.get("usage"):
        lines += ["", *_render_usage(status["usage"])]
    if status.get("approvals"):
        lines += ["", *_render_approvals(status["approvals"])]
    loop = status.get("loop")
    if loop:
        lines += [
            "",
            f"Event loop: {loop['steps']:,} steps, 99% within {loop['p99_ms'] or 0:g} ms; "
            f"the longest {loop['max_ms']:.1f} ms ({loop['max_task'] or 'none'})",
        ]
    reminders = status["reminders"]
    ledger = reminders["ledger"]
    lines += [
        "",
        f"Reminders: {reminders['active']} active, {ledger.get('done', 0)} fired, "
        f"{ledger.get('missed', 0)} missed",
    ]
    lines += [f"  {r['at']}  {r['text']}  ({r['id']})" for r in reminders["next"]]
    beat = status["heartbeat"]
    reviews = ", ".join(f"{n} {state}" for state, n in sorted(beat["reviews"].items())) or "none"
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(beat["skipped"].items())) or "none"
    lines += [
        "",
        f"Heartbeat: {beat['beats']} beats; reviews {reviews}; skipped {skipped}; "
        f"{beat['tokens']:,} tokens",
    ]
    if status.get("matrix"):
        lines += ["", *_render_matrix(status["matrix"])]
    return "\n".join(lines)


def _render_usage(usage: dict[str, Any]) -> list[str]:
    sources = usage["sources"]
    spent = sum(s["tokens_in"] + s["tokens_out"] for s in sources.values())
    lines = [f"Usage today ({usage['day']}): {spent:,} tokens"]
    for source, figures in sources.items():
        mark = "~" if figures["estimated_calls"] else ""
        cost = " + ".join(f"{amount:.4f} {cur}" for cur, amount in sorted(figures["cost"].items()))
        lines.append(
            f"  {source:<14} {mark}{figures['tokens_in']:,} in, {mark}{figures['tokens_out']:,} "
            f"out, {figures['calls']} calls" + (f", {cost}" if cost else "")
        )
    for field, budget in usage["budgets"].items():
        if budget["limit"] is not None:
            stopped = " (stopped for today)" if budget["stopped"] else ""
            lines.append(f"  {field}: {budget['spent']:,} of {budget['limit']:,}{stopped}")
    return lines


def _render_approvals(approvals: dict[str, Any]) -> list[str]:
    pending = approvals["pending"]
    ended = ", ".join(f"{n} {o}" for o, n in sorted(approvals["outcomes"].items())) or "none yet"
    lines = [f"Approvals: {len(pending)} waiting for you; answered so far: {ended}"]
    lines += [f"  {q['call']}  (asked in {q['asked_in']}, {q['id']})" for q in pending]
    return lines


def _render_matrix(matrix: dict[str, Any]) -> list[str]:
    age = matrix["last_sync_age_seconds"]
    last = f"last sync {_duration(age)} ago" if age is not None else "no sync yet"
    errors = ", ".join(f"{kind} {n}" for kind, n in sorted(matrix["errors"].items())) or "none"
    lines = [
        f"Matrix {matrix['user_id']} on {matrix['homeserver']}: {matrix['state']}, {last} "
        f"({matrix['syncs']} syncs)",
        f"  {matrix['joined_rooms']} joined rooms; {matrix['submitted']} messages taken; "
        f"invites {matrix['invites']['accepted']} accepted, "
        f"{matrix['invites']['refused']} refused",
        f"  sync errors: {errors}; {matrix['consecutive_errors']} in a row",
    ]
    if matrix["last_error"] is not None:
        ago = _duration(matrix["last_error_age_seconds"] or 0)
        lines.append(f"  last error ({ago} ago): {matrix['last_error']}")
    lines.append(
        f"  undecryptable events: {matrix['undecryptable']} "
        f"({matrix['decrypted_late']} decrypted once their keys arrived)"
    )
    e2e = matrix["e2e"]
    keys = e2e["one_time_keys"]
    lines.append(
        f"  encryption: device {e2e['device_id']}, ed25519 {e2e['ed25519'] or 'not loaded yet'}"
        + (f", {keys} one-time keys on the server" if keys is not None else "")
    )
    lines += _render_trust(matrix)
    return lines


def _render_trust(matrix: dict[str, Any]) -> list[str]:
    identity = matrix.get("cross_signing")
    if identity is None:
        lines = ["  cross-signing: not checked yet"]
    elif not identity["published"]:
        lines = ["  cross-signing: no identity published"]
    else:
        lines = [
            f"  cross-signing: identity published (master key {identity['master_key']}), "
            f"device {'signed' if identity['device_signed'] else 'NOT signed'}, recovery key "
            f"{'set' if identity['recovery_key_set'] else 'NOT set'}"
        ]
    if identity is not None and identity["problem"]:
        lines.append(f"  cross-signing problem: {identity['problem']}")
    trust = matrix.get("trust") or {}
    refused = ", ".join(f"{why} {n}" for why, n in sorted(trust.get("refused", {}).items()))
    if trust.get("verified_devices_only", True):
        pinned = trust.get("pinned_identities")
        lines.append(
            "  trust: verified devices only; "
            + (f"{pinned} identities pinned; " if pinned is not None else "")
            + f"refused by trust: {refused or 'none'}; "
            + f"{matrix.get('late_key_notices', 0)} late-key notices"
        )
    else:
        lines.append(
            "  trust: OFF (matrix.verified_devices_only: false): any device of an allowed "
            "user is answered, unsafe"
        )
    return lines


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
