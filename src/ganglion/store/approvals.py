"""Approvals, kept: every tool call that waited for the owner's yes, from the question to
what became of it.

`approvals`
    One row per call that needed an answer, keyed by a short id and unique per (turn,
    call; `call_id` names the call for good: the stored message that made it and the
    id the model gave it, see `threads.approvals.call_key`): the conversation whose turn made the call, the tool and its arguments as the
    model wrote them, where the question was asked (`asked_in`: the same conversation,
    or `tools.approval.ask_in` for a system turn), `state` and, once decided, `outcome`,
    who decided and from which interface.

States (each change one transaction, and only forward):

    asked ──> allowed ──> running        the call runs once, after `running` is stored
      └─────> denied                      by the owner, a timeout, Stop, or no one to ask

Outcomes: `once` and `always` (allowed), `owner`, `timeout`, `stop`, `nobody` (denied).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ganglion.store.db import ConversationDB

__all__ = ["Approval", "ApprovalState", "Approvals"]

ApprovalState = Literal["asked", "allowed", "denied", "running"]


@dataclass(frozen=True, slots=True)
class Approval:
    """One question and what became of it (see the module docstring)."""

    id: str
    thread_id: str
    turn_id: str
    call_id: str
    tool: str
    arguments: str
    asked_in: str
    why: str  # the rule or default that asks
    expires_at: float | None  # when it is denied if no one answers (set when asked)
    state: ApprovalState
    outcome: str | None
    decided_by: str | None
    interface: str | None
    created_at: float
    decided_at: float | None


def _approval(row: Mapping[str, Any]) -> Approval:
    return Approval(**{name: row[name] for name in Approval.__dataclass_fields__})


class Approvals:
    """The approvals of `data/conversation.db`, for the thread actors (which ask and
    wait), the interfaces (which show the open questions) and the status."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def open(
        self,
        thread_id: str,
        turn_id: str,
        call_id: str,
        tool: str,
        arguments: str,
        asked_in: str,
        why: str,
    ) -> Approval:
        """The question for this call, stored before it is asked; the one stored before
        when the call was asked about already (a turn resumed after a restart)."""

        def write() -> Approval:
            self._store.execute(
                "INSERT OR IGNORE INTO approvals (id, thread_id, turn_id, call_id, tool, "
                "arguments, asked_in, why, state, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'asked', ?)",
                (
                    secrets.token_hex(4),
                    thread_id,
                    turn_id,
                    call_id,
                    tool,
                    arguments,
                    asked_in,
                    why,
                    time.time(),
                ),
            )
            return self._one("turn_id = ? AND call_id = ?", (turn_id, call_id))

        return await self._store.write(write)

    async def decide(
        self, approval_id: str, *, allowed: bool, outcome: str, by: str, interface: str
    ) -> Approval | None:
        """Decide an open question; None when it is not open (decided already, or
        unknown): the first answer wins."""

        def write() -> Approval | None:
            cursor = self._store.execute(
                "UPDATE approvals SET state = ?, outcome = ?, decided_by = ?, interface = ?, "
                "decided_at = ? WHERE id = ? AND state = 'asked'",
                (
                    "allowed" if allowed else "denied",
                    outcome,
                    by,
                    interface,
                    time.time(),
                    approval_id,
                ),
            )
            return self._one("id = ?", (approval_id,)) if cursor.rowcount else None

        return await self._store.write(write)

    async def asking(self, approval_id: str, expires_at: float) -> None:
        """Record that the question is being asked, until `expires_at`."""
        await self._store.write(
            lambda: self._store.execute(
                "UPDATE approvals SET expires_at = ? WHERE id = ? AND state = 'asked'",
                (expires_at, approval_id),
            )
        )

    async def start(self, approval_id: str) -> bool:
        """Mark an allowed call as running, before it runs; False if it is not allowed
        and waiting to run (it ran, or began to, before a restart)."""

        def write() -> bool:
            cursor = self._store.execute(
                "UPDATE approvals SET state = 'running' WHERE id = ? AND state = 'allowed'",
                (approval_id,),
            )
            return bool(cursor.rowcount)

        return await self._store.write(write)

    async def get(self, approval_id: str) -> Approval | None:
        return await self._store.read(lambda: self._maybe("id = ?", (approval_id,)))

    async def for_call(self, turn_id: str, call_id: str) -> Approval | None:
        return await self._store.read(
            lambda: self._maybe("turn_id = ? AND call_id = ?", (turn_id, call_id))
        )

    async def open_questions(self, asked_in: str | None = None) -> tuple[Approval, ...]:
        """The questions still waiting for an answer (asked in `asked_in`; None: all),
        oldest first."""
        where: str = "state = 'asked'"
        params: tuple[str, ...] = ()
        if asked_in is not None:
            where, params = ("state = 'asked' AND asked_in = ?", (asked_in,))

        def read() -> tuple[Approval, ...]:
            rows = self._store.rows(
                f"SELECT * FROM approvals WHERE {where} ORDER BY created_at", params
            )
            return tuple(_approval(row) for row in rows)

        return await self._store.read(read)

    async def outcomes(self) -> Mapping[str, int]:
        """How many questions ended how (`once`, `always`, `owner`, `timeout`, ...)."""
        rows = await self._store.read(
            lambda: self._store.rows(
                "SELECT outcome, COUNT(*) AS n FROM approvals WHERE outcome IS NOT NULL "
                "GROUP BY outcome"
            )
        )
        return {row["outcome"]: row["n"] for row in rows}

    def _maybe(self, where: str, params: tuple[str, ...]) -> Approval | None:
        rows = self._store.rows(f"SELECT * FROM approvals WHERE {where}", params)
        return _approval(rows[0]) if rows else None

    def _one(self, where: str, params: tuple[str, ...]) -> Approval:
        found = self._maybe(where, params)
        assert found is not None
        return found
