"""The trust rule against the real Synapse (issue 27, item 3): a real `ganglion run`
answers only devices cross-signed by their user's pinned identity.

The owner is a nio human with a cross-signing identity that signed its phone
(`tests.e2e.people`); a second login of the same account is the device a thief would
add. Signing it from the test is what a verified Element session does; uploading a new
master key is what "reset identity" in Element does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.people import PASSWORD, open_other_device
from tests.e2e.test_matrix import Echo, bot_id, bot_messages, echo, open_bot, room_with_bot, say
from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon
from tests.support.matrix_human import MatrixHuman, ReceivedMessage
from tests.support.process import run_ganglion
from tests.support.synapse import Synapse

__all__ = ["echo"]  # the fixture, shared with test_matrix

pytestmark = pytest.mark.slow


async def next_from_bot(human: MatrixHuman, live: LiveDaemon, room_id: str) -> ReceivedMessage:
    return await human.wait_for_message(room_id, bot_id(live))


async def test_an_unsigned_device_of_the_owner_is_refused_with_one_notice_until_signed(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, owner: MatrixHuman
) -> None:
    async with (
        open_bot(tmp_path, synapse, fake_llm, owner) as live,
        open_other_device(owner, "OWNERTAB", tmp_path / "tab", signed=False) as tab,
    ):
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "from the phone")).body == "echo: from the phone"

        await tab.send_text(room_id, "from the tab")
        notice = await next_from_bot(owner, live, room_id)
        assert notice.msgtype == "m.notice" and notice.encrypted
        assert "device OWNERTAB" in notice.body and "not verified" in notice.body
        await tab.send_text(room_id, "from the tab again")
        # The phone's message comes after the tab's: had there been a second notice or
        # an answer to the tab, it would come first.
        assert (await say(owner, live, room_id, "phone again")).body == "echo: phone again"
        assert await bot_messages(owner, live, room_id) == [
            "echo: from the phone",
            notice.body,
            "echo: phone again",
        ]

        await owner.sign_device("OWNERTAB")  # as a verified Element session would
        await tab.send_text(room_id, "signed now")
        while (await next_from_bot(tab, live, room_id)).body != "echo: signed now":
            pass  # the tab reads the bot's replies now (and the notice it was sent)
        assert (await next_from_bot(owner, live, room_id)).body == "echo: signed now"

    prompts = [str(m["content"]) for r in fake_llm.requests for m in r["messages"]]
    assert not any("from the tab" in p for p in prompts)
    log = (live.root / "logs" / "ganglion.log").read_text()
    assert "not answering" in log and "OWNERTAB" in log


async def test_a_changed_identity_is_refused_until_ganglion_matrix_trust_pins_it(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, owner: MatrixHuman
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner) as live:
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "hello")).body == "echo: hello"

        # The owner's identity is reset (Element: "reset cryptographic identity"), and
        # the phone signed by the new one.
        new = await owner.publish_identity(password=PASSWORD)
        await owner.sign_device()
        await owner.send_text(room_id, "after the reset")
        notice = await next_from_bot(owner, live, room_id)
        assert notice.msgtype == "m.notice"
        assert new.master.public_key in notice.body
        assert f"ganglion matrix trust {owner.user_id}" in notice.body

        trusted = await run_ganglion(
            "matrix", "trust", owner.user_id, "--config", str(live.config_path), cwd=tmp_path
        )
        assert trusted.returncode == 0, trusted.stderr.decode()
        out = trusted.stdout.decode()
        assert new.master.public_key in out and owner.device_id in out

        # The running daemon counts the new pin from the next message on.
        assert (await say(owner, live, room_id, "trusted again")).body == "echo: trusted again"
        assert await bot_messages(owner, live, room_id) == [
            "echo: hello",
            notice.body,
            "echo: trusted again",
        ]
    prompts = [str(m["content"]) for r in fake_llm.requests for m in r["messages"]]
    assert not any("after the reset" in p for p in prompts)
