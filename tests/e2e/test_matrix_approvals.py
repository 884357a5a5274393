"""Approvals in a Matrix room (issue 32), end to end: a real `ganglion run` against the
session's Synapse, the nio owner (and a stranger) in an encrypted room, the scripted fake
model asking for shell commands the owner's policy says to ask about. ✅ allows once, ❌
denies, a reply "always" adds the rule the next call runs by, a stranger's ✅ changes
nothing."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml

from ganglion.matrix.sync import CLEAR_APPROVAL
from tests.e2e.people import PASSWORD
from tests.support.element import ElementMessage, ElementOwner
from tests.support.fakellm import FakeLLM, Reply, calling
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.matrix_human import MatrixHuman, ReceivedMessage
from tests.support.synapse import Synapse

pytestmark = pytest.mark.slow

ALLOW, DENY = "\u2705", "\u274c"
CAUTIOUS = {"approval": {"default": {"shell": "ask"}, "rules": []}}


@asynccontextmanager
async def cautious_bot(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, owner_id: str
) -> AsyncIterator[tuple[LiveDaemon, str]]:
    """`ganglion run` as a fresh bot account only `owner_id` may use, asking before every
    shell command; the daemon and the bot's user id."""
    account = await synapse.register(f"bot-{secrets.token_hex(4)}", PASSWORD)
    settings = {
        "homeserver": synapse.base_url,
        "user_id": account.user_id,
        "access_token": account.access_token,
        "device_id": account.device_id,
        "allowed_users": [owner_id],
    }
    async with open_live_daemon(
        tmp_path, fake_llm.base_url, matrix=settings, tools=CAUTIOUS, shutdown={"grace_seconds": 2}
    ) as live:
        yield live, account.user_id


async def until(
    owner: MatrixHuman, room_id: str, bot: str, body: str, told: str
) -> list[ReceivedMessage]:
    """The bot's messages until one said `body` and one began with `told` (what came of
    the question, which may come before or after the answer)."""
    seen = [await owner.wait_for_message(room_id, bot)]
    while not (any(m.body == body for m in seen) and any(m.body.startswith(told) for m in seen)):
        seen.append(await owner.wait_for_message(room_id, bot))
    return seen


async def test_questions_are_answered_with_reactions_and_replies_from_the_owner_only(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    owner: MatrixHuman,
    stranger: MatrixHuman,
) -> None:
    files = {name: tmp_path / name for name in ("one", "two", "three", "five")}
    fake_llm.script(
        calling("shell", command=f"touch {files['one']}"),
        Reply("ran one"),
        calling("shell", command=f"touch {files['two']}"),
        Reply("two was denied"),
        calling("shell", command=f"touch {files['three']}"),
        Reply("ran three"),
        calling("shell", command=f"touch {files['three']}"),
        Reply("ran three again"),
        calling("shell", command=f"touch {files['five']}"),
        Reply("five was denied"),
    )
    async with cautious_bot(tmp_path, synapse, fake_llm, owner.user_id) as (live, bot):
        room_id = await owner.create_room(encrypted=True, invite=[bot])
        await owner.wait_for_membership(room_id, bot)

        # ✅ on the question: allowed once.
        await owner.send_text(room_id, "go one")
        question = await owner.wait_for_message(room_id, bot)
        assert question.encrypted and question.msgtype == "m.text"
        assert f"shell: touch {files['one']}" in question.body
        assert "Reply **yes**, **no** or **always** to this message" in question.body
        assert not files["one"].exists()
        await owner.react(room_id, question.event_id, ALLOW)
        seen = await until(owner, room_id, bot, "ran one", "Allowed once")
        told = [m for m in seen if m.body.startswith("Allowed once")]
        assert [m.msgtype for m in told] == ["m.notice"]
        assert told[0].content["m.relates_to"]["m.in_reply_to"]["event_id"] == question.event_id
        assert files["one"].exists()

        # ❌: denied, and the model is told.
        await owner.send_text(room_id, "go two")
        question = await owner.wait_for_message(room_id, bot)
        await owner.react(room_id, question.event_id, DENY)
        await until(owner, room_id, bot, "two was denied", f"Denied by {owner.user_id}: `shell")
        assert not files["two"].exists()
        results = [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "tool"]
        assert results[-1].startswith("error: not run: the owner denied it")

        # A reply "always" to the question: allowed, and the next such call is not asked.
        await owner.send_text(room_id, "go three")
        question = await owner.wait_for_message(room_id, bot)
        reply = {"m.in_reply_to": {"event_id": question.event_id}}
        await owner.send_event(
            room_id, {"msgtype": "m.text", "body": "always", "m.relates_to": reply}
        )
        await until(owner, room_id, bot, "ran three", "Always allowed")
        await owner.send_text(room_id, "go four")
        assert (await owner.wait_for_message(room_id, bot)).body == "ran three again"
        rules = yaml.safe_load((live.data_dir / "approvals.yaml").read_text())["rules"]
        assert [(r["command"], r["added"].split(" by ")[1]) for r in rules] == [
            (f"touch {files['three']}", f"{owner.user_id} (matrix)")
        ]

        # A stranger's ✅ changes nothing: the owner's ❌ decides.
        await owner.invite(room_id, stranger.user_id)
        await stranger.join(room_id)
        mention = {"msgtype": "m.text", "body": "go five", "m.mentions": {"user_ids": [bot]}}
        await owner.send_event(room_id, mention)
        question = await owner.wait_for_message(room_id, bot)
        assert f"touch {files['five']}" in question.body
        await stranger.react(room_id, question.event_id, ALLOW)
        await stranger.send_event(
            room_id,
            {
                "msgtype": "m.text",
                "body": "yes",
                "m.relates_to": {"m.in_reply_to": {"event_id": question.event_id}},
            },
        )
        await owner.react(room_id, question.event_id, DENY)
        seen = await until(owner, room_id, bot, "five was denied", f"Denied by {owner.user_id}")
        assert not any(m.body.startswith("Allowed") for m in seen)
        assert not files["five"].exists()


async def _element_until(
    owner: ElementOwner, room_id: str, bot: str, body: str, told: str
) -> list[ElementMessage]:
    seen = [await owner.wait_for_message(room_id, bot)]
    while not (
        any(m.body == body for m in seen) and any((m.body or "").startswith(told) for m in seen)
    ):
        seen.append(await owner.wait_for_message(room_id, bot))
    return seen


async def test_from_element_a_reply_approves_a_clear_check_mark_does_not_and_a_cross_denies(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, element_owner: ElementOwner
) -> None:
    """Element's own stack (matrix-js-sdk) sends reactions unencrypted: its ✅ cannot be
    told from one the homeserver made, so it approves nothing and the room is told how
    to answer; a reply (encrypted) approves; its ❌ denies, which runs nothing."""
    files = {name: tmp_path / name for name in ("a", "b")}
    fake_llm.script(
        calling("shell", command=f"touch {files['a']}"),
        Reply("a done"),
        calling("shell", command=f"touch {files['b']}"),
        Reply("b denied"),
    )
    async with cautious_bot(tmp_path, synapse, fake_llm, element_owner.user_id) as (_, bot):
        room_id = await element_owner.create_room(invite=[bot])
        await element_owner.wait_for_membership(room_id, bot)
        await element_owner.send_text(room_id, "go a")
        question = await element_owner.wait_for_message(room_id, bot)
        assert f"shell: touch {files['a']}" in (question.body or "")
        await element_owner.react(room_id, question.event_id, ALLOW)
        told = await element_owner.wait_for_message(room_id, bot)
        assert told.body == CLEAR_APPROVAL and told.encrypted
        assert not files["a"].exists()
        await element_owner.send_reply(room_id, question.event_id, "yes")
        await _element_until(element_owner, room_id, bot, "a done", "Allowed once")
        assert files["a"].exists()

        await element_owner.send_text(room_id, "go b")
        question = await element_owner.wait_for_message(room_id, bot)
        await element_owner.react(room_id, question.event_id, DENY)
        await _element_until(element_owner, room_id, bot, "b denied", "Denied")
        assert not files["b"].exists()
