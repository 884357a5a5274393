"""The bot answers only the owner's devices cross-signed by the owner's pinned identity
(issue 27, item 3), as seen from Element's own client stack: a second device of the
owner that is not cross-signed is not answered and the owner is told once; signing it
from the first device makes it answered; a changed identity is refused until
`ganglion matrix trust` pins it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.e2e.people import PASSWORD
from tests.e2e.test_element import check_answered, open_bot, room_with_bot, say
from tests.e2e.test_matrix import Echo, bot_id, echo
from tests.support.element import ElementOwner, open_element
from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon
from tests.support.process import run_ganglion
from tests.support.synapse import Synapse

__all__ = ["echo"]  # the fixture, shared with test_matrix

pytestmark = pytest.mark.slow

LAPTOP = "ELEMENTLAPTOP"


def prompts(fake_llm: FakeLLM) -> list[str]:
    return [str(r["messages"][-1]["content"]) for r in fake_llm.requests]


async def refusals_logged(live: LiveDaemon, count: int) -> None:
    """Wait until the daemon has logged `count` refusals by the trust rule."""
    with trio.fail_after(30):
        while (
            sum(
                log.read_text().count("not answering") for log in (live.root / "logs").glob("*.log")
            )
            < count
        ):
            await trio.sleep(0.05)


async def test_an_unsigned_device_of_the_owner_is_not_answered_until_the_owner_signs_it(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, element_owner: ElementOwner
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        await check_answered(element_owner, live, room_id, "from my phone")  # pins the owner
        async with open_element(
            synapse.base_url,
            element_owner.user_id,
            PASSWORD,
            device_id=LAPTOP,
            log_path=tmp_path / "element-laptop.log",
        ) as laptop:
            await laptop.send_text(room_id, "from an unsigned laptop")
            await laptop.send_text(room_id, "still unsigned")
            # The notice goes where the owner can read it: the signed device gets it.
            notice = await element_owner.wait_for_message(room_id, bot_id(live))
            assert notice.msgtype == "m.notice", notice
            assert LAPTOP in (notice.body or ""), notice
            # The refused laptop can read it too (it is the device the notice is about).
            seen = await laptop.wait_for_message(room_id, bot_id(live))
            assert (seen.event_id, seen.body) == (notice.event_id, notice.body)
            # Both unsigned messages judged (the second may be read late, once its room
            # key comes) before the laptop is signed: a message the bot reads only after
            # the signing comes from a verified device by then.
            await refusals_logged(live, 2)

            await element_owner.cross_sign_device(LAPTOP)
            await laptop.device_status(element_owner.user_id, LAPTOP, signed_by_owner=True)
            reply = await say(laptop, live, room_id, "from a signed laptop")
            assert (reply.body, reply.encrypted) == ("echo: from a signed laptop", True)
            # Told once: the bot's next message after the notice is that reply.
            told = await element_owner.wait_for_message(room_id, bot_id(live))
            assert told.body == "echo: from a signed laptop", told
            # What was sent before the laptop existed it cannot read (no key backup):
            # expected. Everything since, the bot's notice and answers included, it can.
            unreadable = await laptop.undecryptable(room_id)
            assert {m["decryptionFailure"] for m in unreadable} <= {
                "HISTORICAL_MESSAGE_NO_KEY_BACKUP",
                "HISTORICAL_MESSAGE_USER_NOT_JOINED",
            }, unreadable
    assert prompts(fake_llm) == ["from my phone", "from a signed laptop"]


async def test_a_changed_identity_of_the_owner_is_refused_until_trusted(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, element_owner: ElementOwner
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        await check_answered(element_owner, live, room_id, "before the reset")  # pinned

        # Element's "reset cryptographic identity": a new master key (the server asks
        # for the password this time: it replaces published keys).
        await element_owner.bootstrap_cross_signing(reset=True)
        await element_owner.send_text(room_id, "after the reset")
        notice = await element_owner.wait_for_message(room_id, bot_id(live))
        assert notice.msgtype == "m.notice", notice
        assert f"ganglion matrix trust {element_owner.user_id}" in (notice.body or ""), notice

        trusted = await run_ganglion(
            "matrix",
            "trust",
            element_owner.user_id,
            "--config",
            str(live.config_path),
            cwd=tmp_path,
        )
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        await check_answered(element_owner, live, room_id, "trusted again")
    assert prompts(fake_llm) == ["before the reset", "trusted again"]
