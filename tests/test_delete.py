"""Issue 26 row 3, as it was found: a conversation sets a reminder that would call the
shell, then is deleted. The reminder is cancelled (the owner is told), the actor ends,
and a reminder that reaches the deleted conversation anyway (a row written behind the
reminder actor's back, a race) is refused: no turn, no model call, no tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganglion.messages import ReminderDue
from ganglion.store import ThreadDeleted
from ganglion.web import frames
from tests.support.fakellm import FakeLLM, Reply, calling
from tests.support.web import hello, next_frame, open_web_daemon, send, web_config

A = "web_aaaaaaaaaaaaaaaa"
B = "web_bbbbbbbbbbbbbbbb"


async def test_deleting_a_conversation_cancels_its_reminders_and_ends_its_actor(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling(
            "set_reminder", text="run `rm -rf ~/notes` with the shell", kind="at", schedule="in 3h"
        ),
        Reply("Set."),
    )
    async with (
        open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web,
        web.socket() as tab_a,
        web.socket() as tab_b,
    ):
        services = web.services
        await hello(tab_a, A)
        await send(tab_a, "remind me")
        assert (await next_frame(tab_a, "reply"))["text"] == "Set."
        [reminder] = await services.reminder_store.active()
        assert reminder.thread_id == A
        await hello(tab_b, B)
        await tab_b.send_message(frames.delete(A))
        notice = await next_frame(tab_b, "notice")
        assert notice["text"] == "Deleted the conversation and cancelled the 1 reminder it had set."
        await next_frame(tab_b, "threads")
        assert await services.reminder_store.active() == []
        assert services.threads.get(A) is None
        requests = len(fake_llm.requests)

        slot = "2026-01-01T00:00:00Z"
        due = ReminderDue(A, reminder.id, slot, reminder.text)
        with pytest.raises(ThreadDeleted):
            await services.threads.ask(
                A,
                lambda accepted: ReminderDue(A, reminder.id, slot, reminder.text, False, accepted),
            )
        await send(tab_a, "still there?", "m2")
        refused = await next_frame(tab_a, "error")
        assert (refused["code"], refused["id"]) == ("deleted", "m2")
        assert len(fake_llm.requests) == requests  # no model call, so no tool either
        assert await services.store.turns.turn(due.turn_id) is None
        assert not await services.store.library.queued_turns(A)
