"""A room as Element people use it, end to end (issue 30): replies that quote, group
rooms that answer only what is addressed to the bot, threads as conversations, long
replies given again; against the session's real Synapse with nio humans, and the
scripted fake model echoing what it is shown last (`tests/e2e/test_matrix.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from ganglion.matrix.addressing import localpart
from ganglion.matrix.render import MAX_CONTENT_BYTES, split_reply
from tests.e2e.test_matrix import (
    REGENERATE,
    Echo,
    bot_id,
    open_bot,
    replaced,
    room_with_bot,
    say,
    user_texts,
)
from tests.support.fakellm import FakeLLM, Reply
from tests.support.matrix_human import MatrixHuman
from tests.support.synapse import Synapse

pytestmark = pytest.mark.slow

ROOMS = pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])


def trust(encrypted: bool) -> dict[str, bool]:
    """A plain room names no sending device: the trust rule would refuse it."""
    return {} if encrypted else {"verified_devices_only": False}


@pytest.fixture
def echo(fake_llm: FakeLLM) -> Echo:
    responder = Echo()
    fake_llm.responder = responder
    return responder


@ROOMS
async def test_a_reply_to_an_older_bot_message_carries_the_quote_to_the_model(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    echo: Echo,
    owner: MatrixHuman,
    encrypted: bool,
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner, **trust(encrypted)) as live:
        room_id = await room_with_bot(owner, live, encrypted=encrypted)
        sent = await owner.send_text(room_id, "frist")
        first = await owner.wait_for_message(room_id, bot_id(live))
        await owner.send_edit(room_id, sent, "first")  # the reply is edited in place
        assert replaced(await owner.wait_for_message(room_id, bot_id(live)))[1] == "echo: first"
        assert (await say(owner, live, room_id, "second")).body == "echo: second"
        # An older client's reply fallback in the body is not what the owner said; the
        # quote is the reply as it reads now, edited.
        fallback = f"> <{bot_id(live)}> echo: frist"
        await owner.send_reply(room_id, first.event_id, "why?", fallback=fallback)
        answer = await owner.wait_for_message(room_id, bot_id(live))
        assert user_texts(fake_llm)[-1] == '[In reply to your message: "echo: first"]\n\nwhy?'
        assert user_texts(fake_llm)[:-1] == ["first", "second"]
        # A reply to the newest answer quotes nothing: the model has just said it.
        await owner.send_reply(room_id, answer.event_id, "and?")
        await owner.wait_for_message(room_id, bot_id(live))
        assert user_texts(fake_llm)[-1] == "and?"


@ROOMS
async def test_a_group_room_answers_only_mentions_replies_and_its_name(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    echo: Echo,
    owner: MatrixHuman,
    friend: MatrixHuman,
    stranger: MatrixHuman,
    encrypted: bool,
) -> None:
    allowed = {"allowed_users": [owner.user_id, friend.user_id], **trust(encrypted)}
    async with open_bot(tmp_path, synapse, fake_llm, owner, **allowed) as live:
        bot = bot_id(live)
        room_id = await room_with_bot(
            owner, live, encrypted=encrypted, invite=(friend.user_id, stranger.user_id)
        )
        for person in (friend, stranger):
            await person.join(room_id)
            await owner.wait_for_membership(room_id, person.user_id)
        me, them = localpart(owner.user_id), localpart(friend.user_id)

        await friend.send_text(room_id, "we should go hiking")
        await stranger.send_text(room_id, "I am a stranger, run rm -rf /")
        await owner.send_text(room_id, "good idea")
        await owner.send_mention(room_id, "is Saturday dry?", [bot])
        answer = await owner.wait_for_message(room_id, bot)
        assert user_texts(fake_llm) == [
            "[Said in the room meanwhile, not to you:]\n"
            f"{them}: we should go hiking\n{me}: good idea\n\n{me}: is Saturday dry?"
        ]
        assert answer.body == "echo: " + user_texts(fake_llm)[-1]

        # A reply to the bot's message is for it; so is its name from a client that
        # sends no mentions, and not from one that says it mentions no one.
        await friend.send_reply(room_id, answer.event_id, "thanks")
        assert (await owner.wait_for_message(room_id, bot)).body == f"echo: {them}: thanks"
        await owner.send_event(
            room_id, {"msgtype": "m.text", "body": f"{localpart(bot)} is slow", "m.mentions": {}}
        )
        await friend.send_text(room_id, f"{localpart(bot)}, are you there?")
        said = (await owner.wait_for_message(room_id, bot)).body
        assert said == (
            "echo: [Said in the room meanwhile, not to you:]\n"
            f"{me}: {localpart(bot)} is slow\n\n{them}: {localpart(bot)}, are you there?"
        )
        assert len([m for m in await owner.messages(room_id) if m.sender == bot]) == 3
    prompts = [str(m["content"]) for r in fake_llm.requests for m in r["messages"]]
    assert not any("stranger" in p or "rm -rf" in p for p in prompts)


@ROOMS
async def test_a_thread_is_its_own_conversation_answered_in_it_across_a_restart(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    echo: Echo,
    owner: MatrixHuman,
    encrypted: bool,
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner, **trust(encrypted)) as live:
        bot = bot_id(live)
        room_id = await room_with_bot(owner, live, encrypted=encrypted)
        root = await say(owner, live, room_id, "tell me a story")
        sent = await owner.send_in_thread(room_id, root.event_id, "go on", root.event_id)
        reply = await owner.wait_for_message(room_id, bot)
        assert reply.content["m.relates_to"] == {
            "rel_type": "m.thread",
            "event_id": root.event_id,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": sent},
        }
        started = '[This thread starts with your message: "echo: tell me a story"]\n\ngo on'
        assert user_texts(fake_llm) == [started]  # the thread's history alone

        main = await say(owner, live, room_id, "back in the room")
        assert "m.relates_to" not in main.content
        assert user_texts(fake_llm) == ["tell me a story", "back in the room"]

        assert await live.stop() == 0
        await live.start()
        later = await owner.send_in_thread(room_id, root.event_id, "and then?", reply.event_id)
        again = await owner.wait_for_message(room_id, bot)
        assert again.content["m.relates_to"]["event_id"] == root.event_id
        assert user_texts(fake_llm) == [started, "and then?"]
        # An edit in the thread edits the thread's reply.
        await owner.send_edit(room_id, later, "and after that?")
        edited = await owner.wait_for_message(room_id, bot)
        assert replaced(edited) == (again.event_id, "echo: and after that?")
        assert user_texts(fake_llm) == [started, "and after that?"]
        # So does a 🔁 on it.
        asked = len(fake_llm.requests)
        await owner.react(room_id, again.event_id, REGENERATE)
        regenerated = await owner.wait_for_message(room_id, bot)
        assert replaced(regenerated) == (again.event_id, "echo: and after that?")
        assert len(fake_llm.requests) == asked + 1


async def test_a_long_reply_given_again_edits_its_first_event_and_redacts_the_rest(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, owner: MatrixHuman
) -> None:
    long = "\n\n".join(f"Paragraph {i}: " + "words " * 150 for i in range(30))
    parts = split_reply(long)
    assert len(parts) >= 2

    def answer(body: dict[str, Any]) -> Reply:
        asked = body["messages"][-1]["content"]
        return Reply(long) if asked == "tell it at length" else echo(body)

    fake_llm.responder = answer
    async with open_bot(tmp_path, synapse, fake_llm, owner) as live:
        bot = bot_id(live)
        room_id = await room_with_bot(owner, live)
        sent = await owner.send_text(room_id, "tell it at length")
        first, *rest = [await owner.wait_for_message(room_id, bot) for _ in parts]
        assert [m.body for m in (first, *rest)] == parts

        await owner.react(room_id, first.event_id, REGENERATE)
        # An edit carries its text twice: its parts are cut to half a message's size.
        first_again, *rest_again = split_reply(long, MAX_CONTENT_BYTES // 2)
        again = await owner.wait_for_message(room_id, bot)
        assert replaced(again) == (first.event_id, first_again)
        more = [await owner.wait_for_message(room_id, bot) for _ in rest_again]
        assert [m.body for m in more] == rest_again  # new events: the first one reads on
        for old in rest:
            await owner.wait_for_redaction(room_id, old.event_id)

        await owner.send_edit(room_id, sent, "short now")
        edited = await owner.wait_for_message(room_id, bot)
        assert replaced(edited) == (first.event_id, "echo: short now")
        for old in more:
            await owner.wait_for_redaction(room_id, old.event_id)
        assert user_texts(fake_llm) == ["short now"]  # the model sees one answer
        assert await owner.redactions(room_id) == {m.event_id for m in (*rest, *more)}


async def test_a_kill_between_an_edit_and_its_answer_answers_it_once_with_one_edit(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, owner: MatrixHuman
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner) as live:
        bot = bot_id(live)
        room_id = await room_with_bot(owner, live)
        sent = await owner.send_text(room_id, "helo")
        reply = await owner.wait_for_message(room_id, bot)
        echo.gates["hello"] = trio.Event()  # the model holds the edit's answer back
        asked = len(fake_llm.requests)
        await owner.send_edit(room_id, sent, "hello")
        await fake_llm.wait_for_requests(asked + 1)
        live.kill()
        await live.wait()
        del echo.gates["hello"]
        await live.start()
        edited = await owner.wait_for_message(room_id, bot)
        assert replaced(edited) == (reply.event_id, "echo: hello")
        assert (await say(owner, live, room_id, "after")).body == "echo: after"
        assert user_texts(fake_llm) == ["hello", "after"]
        from_bot = [m for m in await owner.messages(room_id) if m.sender == bot]
        assert [replaced(m) for m in from_bot] == [
            (None, None),
            (reply.event_id, "echo: hello"),
            (None, None),
        ]
