"""Mailboxes, references and request/reply."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio
import trio.testing

from ganglion_actors import (
    ActorDied,
    ActorRef,
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


async def ask_and_keep(ref: ActorRef[Get], results: list[BaseException | int]) -> None:
    try:
        answer: int = await ref.ask(Get)
        results.append(answer)
    except Exception as exc:
        results.append(exc)


async def test_ask_returns_the_answer() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("counter", counter))
        await ref.send(Add(2))
        ref.send_nowait(Add(3))
        with trio.fail_after(1):
            assert await ref.ask(Get) == 5


async def test_send_waits_while_the_mailbox_is_full() -> None:
    gate = trio.Event()
    received: list[object] = []

    async def slow(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await gate.wait()
        async for message in inbox:
            received.append(message)

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("slow", slow, mailbox_size=1))
        await ref.send("first")
        sent = trio.Event()

        async def send_second() -> None:
            await ref.send("second")
            sent.set()

        with trio.fail_after(1):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_second)
                await trio.testing.wait_all_tasks_blocked()
                assert not sent.is_set()
                assert ref.statistics().mailbox_depth == 1
                gate.set()
                await sent.wait()
    assert received == ["first", "second"]


async def test_send_nowait_raises_mailbox_full_naming_actor_and_capacity() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("stuck", never_reads, mailbox_size=2))
        ref.send_nowait(1)
        ref.send_nowait(2)
        with pytest.raises(MailboxFull, match=r"'stuck' is full \(2 messages\)"):
            ref.send_nowait(3)


async def test_send_and_ask_to_a_stopped_actor_raise_actor_stopped() -> None:
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("counter", counter))
        await sup.shutdown(1)
        with pytest.raises(ActorStopped, match="'counter'"):
            await ref.send(Add(1))
        with pytest.raises(ActorStopped):
            ref.send_nowait(Add(1))
        with pytest.raises(ActorStopped), trio.fail_after(1):
            await ref.ask(Get)


async def test_close_stops_intake_and_the_actor_drains_what_is_queued() -> None:
    received: list[object] = []
    ended = trio.Event()

    async def collector(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for message in inbox:
            received.append(message)
        ended.set()

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("collector", collector, restart=Restart.PERMANENT))
        ref.send_nowait("a")
        ref.send_nowait("b")
        ref.close()
        with pytest.raises(ActorStopped):
            ref.send_nowait("c")
        with trio.fail_after(1):
            await ended.wait()
        assert received == ["a", "b"]
        assert ref.statistics().closed
        assert sup.statistics().restarts == 0  # a closed mailbox is never restarted


async def test_ask_raises_actor_died_when_the_actor_crashes_holding_the_request() -> None:
    async def crashes_on_get(inbox: Inbox[Get], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await inbox.receive()
        raise RuntimeError("boom")

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("fragile", crashes_on_get, restart=Restart.TEMPORARY))
        with pytest.raises(ActorDied, match="'fragile' ended before replying"), trio.fail_after(1):
            await ref.ask(Get)


async def test_ask_raises_actor_died_when_the_actor_returns_without_replying() -> None:
    async def forgets(inbox: Inbox[Get], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await inbox.receive()

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("forgetful", forgets, restart=Restart.PERMANENT))
        with pytest.raises(ActorDied), trio.fail_after(1):
            await ref.ask(Get)


async def test_asks_still_queued_fail_with_actor_stopped_when_a_temporary_actor_dies() -> None:
    gate = trio.Event()

    async def dies_after_gate(inbox: Inbox[Get], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await gate.wait()
        raise RuntimeError("boom")

    results: list[BaseException | int] = []
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("fragile", dies_after_gate, restart=Restart.TEMPORARY))
        with trio.fail_after(1):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_and_keep, ref, results)
                nursery.start_soon(ask_and_keep, ref, results)
                await trio.testing.wait_all_tasks_blocked()
                gate.set()
    assert [type(r) for r in results] == [ActorStopped, ActorStopped]


async def test_an_ask_waiting_for_room_fails_with_actor_stopped_when_the_actor_stops(
    autojump_clock: trio.abc.Clock,
) -> None:
    results: list[BaseException | int] = []
    async with open_supervisor("s") as sup:
        ref: ActorRef[Get] = await sup.start(ChildSpec("stuck", never_reads, mailbox_size=1))
        ref.send_nowait(Get(Reply()))
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_and_keep, ref, results)
                await trio.testing.wait_all_tasks_blocked()
                await sup.shutdown(grace=1)
    assert [type(r) for r in results] == [ActorStopped]


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


async def test_the_first_resolution_of_a_reply_wins() -> None:
    reply: Reply[int] = Reply()
    assert not reply.done
    reply.send(1)
    reply.send(2)
    reply.fail(RuntimeError("late"))
    assert reply.done
    with trio.fail_after(1):
        assert await reply.wait() == 1


async def test_current_actor_name_is_set_inside_an_actor_only() -> None:
    seen: list[str | None] = []

    async def records(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        seen.append(current_actor_name())
        task_status.started()

    assert current_actor_name() is None
    async with open_supervisor("s") as sup:
        await sup.start(ChildSpec("named", records, restart=Restart.TEMPORARY))
    assert seen == ["named"]
    assert current_actor_name() is None


async def test_actor_statistics() -> None:
    async def reads_one(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await inbox.receive()
        await trio.sleep_forever()

    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("one", reads_one, mailbox_size=4))
        for n in range(3):
            ref.send_nowait(n)
        await trio.testing.wait_all_tasks_blocked()
        stats = ref.statistics()
        assert (stats.name, stats.mailbox_depth, stats.mailbox_capacity) == ("one", 2, 4)
        assert stats.received == 1
        assert (stats.running, stats.closed, stats.restarts) == (True, False, 0)
        with pytest.raises(AttributeError):
            stats.name = "x"  # type: ignore[misc]


async def test_a_mailbox_needs_room_for_a_message() -> None:
    async with open_supervisor("s") as sup:
        with pytest.raises(ValueError, match="room"):
            await sup.start(ChildSpec("zero", never_reads, mailbox_size=0))
