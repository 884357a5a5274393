"""Mailboxes, references and request/reply."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

from ganglion_actors import (
    ActorDied,
    ActorStopped,
    ChildSpec,
    Inbox,
    MailboxFull,
    Reply,
    Restart,
    current_actor_name,
    open_supervisor,
)


@dataclass(frozen=True)
class Get:
    reply: Reply[int]


@dataclass(frozen=True)
class Add:
    n: int


async def counter(inbox: Inbox[Add | Get], *, task_status: trio.TaskStatus[None]) -> None:
    total = 0
    task_status.started()
    async for message in inbox:
        match message:
            case Add(n):
                total += n
            case Get(reply):
                reply.send(total)


async def never_reads(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await trio.sleep_forever()


async def test_ask_returns_the_answer() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("counter", counter))
        await ref.send(Add(2))
        ref.send_nowait(Add(3))
        with trio.fail_after(1):
            assert await ref.ask(Get) == 5


async def test_send_waits_while_the_mailbox_is_full(autojump_clock: trio.abc.Clock) -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("stuck", never_reads, mailbox_size=1))
        await ref.send("first")
        with trio.move_on_after(5) as scope:
            await ref.send("second")
        assert scope.cancelled_caught
        assert ref.statistics().mailbox_depth == 1


async def test_send_nowait_raises_mailbox_full() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("stuck", never_reads, mailbox_size=2))
        ref.send_nowait(1)
        ref.send_nowait(2)
        with pytest.raises(MailboxFull, match="'stuck' is full"):
            ref.send_nowait(3)


async def test_sending_to_a_stopped_actor_raises_actor_stopped() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("counter", counter))
        await sup.shutdown(1)
        with pytest.raises(ActorStopped, match="'counter'"):
            await ref.send(Add(1))
        with pytest.raises(ActorStopped):
            ref.send_nowait(Add(1))
        with pytest.raises(ActorStopped), trio.fail_after(1):
            await ref.ask(Get)


async def test_ask_raises_actor_died_when_the_actor_crashes_holding_the_request() -> None:
    async def crashes_on_get(inbox: Inbox[Get], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await inbox.receive()
        raise RuntimeError("boom")

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("fragile", crashes_on_get, restart=Restart.TEMPORARY))
        with pytest.raises(ActorDied), trio.fail_after(1):
            await ref.ask(Get)


async def test_asks_still_queued_fail_when_a_temporary_actor_dies_for_good() -> None:
    gate = trio.Event()

    async def dies_after_gate(inbox: Inbox[Get], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await gate.wait()
        raise RuntimeError("boom")

    results: list[BaseException] = []

    async def asker(ref: object) -> None:
        try:
            await ref.ask(Get)  # type: ignore[attr-defined]
        except Exception as exc:
            results.append(exc)

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("fragile", dies_after_gate, restart=Restart.TEMPORARY))
        with trio.fail_after(1):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(asker, ref)
                nursery.start_soon(asker, ref)
                await trio.testing.wait_all_tasks_blocked()
                gate.set()
    assert [type(e) for e in results] == [ActorStopped, ActorStopped]


async def test_ask_respects_the_callers_deadline(autojump_clock: trio.abc.Clock) -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("stuck", never_reads))
        with pytest.raises(trio.TooSlowError), trio.fail_after(3):
            await ref.ask(Get)


async def test_reply_fail_is_raised_to_the_asker() -> None:
    async def refuses(inbox: Inbox[Get], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for message in inbox:
            message.reply.fail(ValueError("no"))

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("refuser", refuses))
        with pytest.raises(ValueError, match="no"), trio.fail_after(1):
            await ref.ask(Get)


async def test_current_actor_name_inside_an_actor() -> None:
    seen: list[str | None] = []

    async def records(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        seen.append(current_actor_name())
        task_status.started()

    assert current_actor_name() is None
    async with open_supervisor("s") as sup:
        await sup.start(ChildSpec("named", records, restart=Restart.TEMPORARY))
    assert seen == ["named"]


async def test_actor_statistics_are_a_frozen_record() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("stuck", never_reads, mailbox_size=4))
        ref.send_nowait(1)
        stats = ref.statistics()
        assert (stats.name, stats.mailbox_depth, stats.mailbox_capacity) == ("stuck", 1, 4)
        assert stats.running and not stats.closed and stats.restarts == 0
        with pytest.raises(AttributeError):
            stats.name = "x"  # type: ignore[misc]
