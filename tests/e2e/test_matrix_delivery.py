"""The two Matrix deliveries no client reaches by itself, through a proxy in front of the
real Synapse (tests/support/hsproxy.py):

- the daemon killed after the homeserver stored its reply and before the delivery mark
  was written: the resend after the restart carries the same transaction id, and the room
  holds the reply once;
- a room key the (nio) human withholds from the bot's device, then sends: the bot asks
  for it, decrypts the message once it has it, and answers it once.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
import trio
import yaml

from tests.e2e.test_matrix import (
    Echo,
    bot_id,
    bot_messages,
    open_bot,
    room_with_bot,
    say,
    undelivered,
)
from tests.support.fakellm import FakeLLM
from tests.support.hsproxy import Seen, open_homeserver_proxy
from tests.support.live import LiveDaemon
from tests.support.matrix_human import MatrixHuman
from tests.support.synapse import Synapse

pytestmark = pytest.mark.slow

REPLY_SEND = re.compile(r"/rooms/[^/]+/send/m\.room\.(encrypted|message)/(ganglion-\d+(-\d+)?)$")


def reply_transaction(seen: Seen) -> str | None:
    """The transaction id of a reply the daemon sends from its outbox (not a notice's)."""
    found = REPLY_SEND.search(seen.path) if seen.method == "PUT" else None
    return found.group(2) if found else None


async def test_a_reply_stored_before_a_kill_is_resent_with_its_transaction_id_and_kept_once(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, owner: MatrixHuman
) -> None:
    fake_llm.responder = Echo()
    async with (
        open_homeserver_proxy(synapse.base_url) as proxy,
        open_bot(tmp_path, synapse, fake_llm, owner, homeserver=proxy.base_url) as live,
    ):
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "before")).body == "echo: before"
        killed = trio.Event()

        def kill() -> None:
            live.kill()  # Synapse has stored the event; the daemon never hears so
            killed.set()

        proxy.after_accepted(lambda seen: reply_transaction(seen) is not None, then=kill)
        await owner.send_text(room_id, "only once")
        with trio.fail_after(60):
            await killed.wait()
        assert await live.wait() == -signal.SIGKILL
        assert undelivered(live, room_id) == ["echo: only once"]  # the mark was not written
        [stored] = [t for s in proxy.seen if (t := reply_transaction(s))][1:]

        await live.start()
        with trio.fail_after(60):
            while undelivered(live, room_id):
                await trio.sleep(0.05)
        sends = [t for s in proxy.seen if (t := reply_transaction(s))]
        assert sends[1:] == [stored, stored]  # the resend reused the transaction id
        assert (await owner.wait_for_message(room_id, bot_id(live))).body == "echo: only once"
        assert (await say(owner, live, room_id, "after")).body == "echo: after"
        assert await bot_messages(owner, live, room_id) == [
            "echo: before",
            "echo: only once",
            "echo: after",
        ]
        history = await owner.read_history(room_id)
        assert history.count("echo: only once") == 1, history
        assert [r["messages"][-1]["content"] for r in fake_llm.requests].count("only once") == 1


async def test_a_withheld_room_key_is_asked_for_and_the_message_answered_once_it_comes(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, owner: MatrixHuman
) -> None:
    fake_llm.responder = Echo()
    async with (
        open_homeserver_proxy(synapse.base_url) as proxy,
        open_bot(tmp_path, synapse, fake_llm, owner, homeserver=proxy.base_url) as live,
    ):
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "hello")).body == "echo: hello"
        device = bot_device(live)
        session_id = await owner.send_text_withholding_key(room_id, "can you read this?", device)

        with trio.fail_after(60):  # the bot asks for the key it lacks
            while not key_requests(proxy.seen, session_id):
                await trio.sleep(0.05)
        # ...of the device that sent the message, not only of its own devices.
        recipients = json.loads(key_requests(proxy.seen, session_id)[0].body)["messages"]
        assert owner.device_id in recipients.get(owner.user_id, {}), recipients
        assert await bot_messages(owner, live, room_id) == ["echo: hello"]
        assert "can you read this?" not in json.dumps(fake_llm.requests)

        await owner.send_withheld_key(room_id, device)
        reply = await owner.wait_for_message(room_id, bot_id(live))
        assert (reply.body, reply.encrypted) == ("echo: can you read this?", True)
        assert (await say(owner, live, room_id, "and now?")).body == "echo: and now?"
        assert await bot_messages(owner, live, room_id) == [
            "echo: hello",
            "echo: can you read this?",
            "echo: and now?",
        ]
        asked = [r["messages"][-1]["content"] for r in fake_llm.requests]
        assert asked.count("can you read this?") == 1


def key_requests(seen: list[Seen], session_id: str) -> list[Seen]:
    """The daemon's `m.room_key_request`s for the Megolm session `session_id`."""
    found = []
    for request in seen:
        if "/sendToDevice/m.room_key_request/" not in request.path:
            continue
        for devices in json.loads(request.body)["messages"].values():
            for content in devices.values():
                if content.get("action") == "request" and (
                    content["body"]["session_id"] == session_id
                ):
                    found.append(request)
    return found


def bot_device(live: LiveDaemon) -> tuple[str, str]:
    """The bot's (user id, device id), from its config."""
    config = yaml.safe_load(live.config_path.read_text())
    return bot_id(live), str(config["matrix"]["device_id"])
