"""The registry of dynamic children: spawn on demand, idle passivation, restarts."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from ganglion_actors import (
    ActorFn,
    ActorStopped,
    Backoff,
    ChildSpec,
    Inbox,
    Registry,
    Reply,
    current_actor_name,
    open_supervisor,
)

IDLE = 60.0
STEADY = Backoff(initial=1.0, factor=1.0, maximum=1.0, jitter=0.0)


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Recall:
    reply: Reply[list[str]]


@dataclass(frozen=True)
class Crash:
    pass


class World:
    """Per-key state that outlives incarnations, so tests can see what each one saw."""

    def __init__(self, *, linger: float = 0.0) -> None:
        self.linger = linger  # seconds an incarnation takes to wind down after its inbox
        self.notes: dict[str, list[str]] = {}
        self.names: list[str | None] = []
        self.events: list[tuple[str, str, float]] = []  # (key, "start" | "end", time)

    def incarnations(self, key: str) -> int:
        return sum(1 for k, what, _ in self.events if k == key and what == "start")

    def spawn(self, key: str) -> ActorFn:
        async def run(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
            self.events.append((key, "start", trio.current_time()))
            self.names.append(current_actor_name())
            task_status.started()
            async for message in inbox:
                match message:
                    case Note(text):
                        self.notes.setdefault(key, []).append(text)
                    case Recall(reply):
                        reply.send(list(self.notes.get(key, [])))
                    case Crash():
                        raise RuntimeError(f"{key} crashed")
            await trio.sleep(self.linger)
            self.events.append((key, "end", trio.current_time()))

        return run


@asynccontextmanager
async def serving(registry: Registry[str, object]) -> AsyncIterator[None]:
    """Host `registry` under a supervisor for the duration of the block."""
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec(registry.name, registry.serve))
        yield


def registry_for(world: World, **options: Any) -> Registry[str, object]:
    return Registry("threads", world.spawn, idle_timeout=IDLE, backoff=STEADY, **options)


async def test_a_child_is_spawned_on_its_first_message(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        assert registry.get("a") is None
        await registry.send("a", Note("hi"))
        assert registry.live_keys() == {"a"}
        with trio.fail_after(1):
            assert await registry.ask("a", Recall) == ["hi"]
        assert world.incarnations("a") == 1


async def test_a_stopped_child_is_cancelled_and_the_next_message_spawns_anew(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World(linger=3600.0)  # an incarnation that would take an hour to wind down
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("a", Note("before"))
        await trio.testing.wait_all_tasks_blocked()
        assert registry.stop("a") is True
        assert registry.get("a") is None
        assert registry.stop("a") is False  # nothing runs for it any more
        with trio.fail_after(1):  # the new child waits only for the cancelled one
            assert await registry.ask("a", Recall) == ["before"]
        assert world.incarnations("a") == 2
        assert ("a", "end") not in {(key, what) for key, what, _ in world.events}


SENDERS_REQUEST: contextvars.ContextVar[object] = contextvars.ContextVar("request")


async def test_a_child_starts_from_the_hosts_context_never_its_first_senders(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A web request's context (its socket, its app context) must not live as long as the
    # conversation its first message spawned.
    seen: list[object] = []

    def spawn(key: str) -> ActorFn:
        async def run(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
            seen.append(SENDERS_REQUEST.get(None))
            task_status.started()
            async for _ in inbox:
                pass

        return run

    registry: Registry[str, object] = Registry("threads", spawn, idle_timeout=IDLE)
    async with serving(registry):
        SENDERS_REQUEST.set("the sender's socket")
        await registry.send("a", Note("hi"))
        await trio.testing.wait_all_tasks_blocked()
    assert seen == [None]


async def test_an_idle_child_is_passivated(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("a", Note("one"))
        await trio.sleep(IDLE - 1)
        assert registry.live_keys() == {"a"}
        await trio.sleep(2)
        assert registry.live_keys() == frozenset()
        assert registry.get("a") is None
        assert [what for _, what, _ in world.events] == ["start", "end"]
        assert registry.statistics().passivated == 1


async def test_a_passivated_child_is_respawned_transparently(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("a", Note("one"))
        await trio.sleep(IDLE * 2)
        with trio.fail_after(1):
            assert await registry.ask("a", Recall) == ["one"]
        assert world.incarnations("a") == 2


async def test_a_busy_child_is_not_passivated(autojump_clock: trio.abc.Clock) -> None:
    holding = trio.Event()

    def spawn(key: str) -> ActorFn:
        async def run(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            inbox.set_busy(True)
            holding.set()
            async for _ in inbox:
                pass

        return run

    registry: Registry[str, object] = Registry("threads", spawn, idle_timeout=IDLE)
    async with serving(registry):
        await registry.send("a", Note("x"))
        with trio.fail_after(1):
            await holding.wait()
        await trio.sleep(IDLE * 10)
        assert registry.live_keys() == {"a"}


async def test_no_message_is_lost_at_the_idle_boundary(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    registry = registry_for(world)
    sent: list[str] = []
    async with serving(registry):
        for i in range(30):
            # Land sends just before, right at and just after the idle deadline.
            await trio.sleep(IDLE - 0.001 + (i % 3) * 0.001)
            registry.send_nowait("a", Note(str(i)))
            sent.append(str(i))
        with trio.fail_after(1):
            assert await registry.ask("a", Recall) == sent
        assert world.incarnations("a") > 1  # passivation really happened in between


async def test_a_respawned_child_starts_once_the_passivated_one_has_returned(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World(linger=5.0)
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("a", Note("one"))
        await trio.sleep(IDLE + 1)  # passivated, still winding down
        assert registry.live_keys() == frozenset()
        await registry.send("a", Note("two"))
        with trio.fail_after(10):
            assert await registry.ask("a", Recall) == ["one", "two"]
    [_, end, restart] = [(what, t) for _, what, t in world.events][:3]
    assert end[0] == "end" and restart[0] == "start"
    assert restart[1] >= end[1]


async def test_a_crashed_child_restarts_with_its_mailbox_intact(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("a", Note("before"))
        ref = registry.get("a")
        assert ref is not None
        registry.send_nowait("a", Crash())
        registry.send_nowait("a", Note("queued behind the crash"))
        with trio.fail_after(10):
            assert await ref.ask(Recall) == ["before", "queued behind the crash"]
        assert registry.get("a") is ref
        assert (ref.statistics().restarts, world.incarnations("a")) == (1, 2)


async def test_a_crash_looping_child_is_given_up_without_escalating(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    world = World()
    registry = registry_for(world, intensity=2, period=60.0)
    async with serving(registry):
        for _ in range(3):
            registry.send_nowait("bad", Crash())
        with pytest.raises(ActorStopped), trio.fail_after(10):
            await registry.ask("bad", Recall)  # queued behind the fatal crash
        assert "bad" not in registry.live_keys()
        assert registry.statistics().failed == 1
        assert any(
            r.levelno == logging.ERROR
            and "giving up" in r.getMessage()
            and "threads/bad" in r.getMessage()
            for r in caplog.records
        )
        await registry.send("good", Note("fine"))  # the rest of the registry keeps working
        with trio.fail_after(1):
            assert await registry.ask("good", Recall) == ["fine"]


async def test_sends_fail_clearly_when_the_registry_is_not_running() -> None:
    registry = registry_for(World())
    with pytest.raises(ActorStopped, match="threads registry is not running"):
        await registry.send("a", Note("x"))
    with pytest.raises(ActorStopped, match="threads registry is not running"):
        registry.send_nowait("a", Note("x"))
    with pytest.raises(ActorStopped, match="threads registry is not running"):
        await registry.ask("a", Recall)


async def test_a_graceful_stop_of_the_host_drains_every_child(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    registry = registry_for(world)
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec("threads", registry.serve))
        for key in ("a", "b"):
            registry.send_nowait(key, Note(f"last words of {key}"))
        await sup.shutdown(grace=5)
    assert world.notes == {"a": ["last words of a"], "b": ["last words of b"]}
    with pytest.raises(ActorStopped):
        await registry.send("a", Note("too late"))


async def test_cancelling_the_host_cancels_the_children(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("a", Note("x"))
        await trio.testing.wait_all_tasks_blocked()
    assert [what for _, what, _ in world.events] == ["start"]  # never reached its "end"
    assert registry.live_keys() == frozenset()


async def test_registry_children_are_named_after_registry_and_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("web_ab12", Note("x"))
        await trio.testing.wait_all_tasks_blocked()
        ref = registry.get("web_ab12")
        assert ref is not None and ref.name == "threads/web_ab12"
    assert world.names == ["threads/web_ab12"]


async def test_registry_statistics(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    registry = registry_for(world)
    async with serving(registry):
        await registry.send("gone", Note("x"))
        await trio.sleep(IDLE * 2)
        await registry.send("flaky", Crash())
        await trio.sleep(STEADY.maximum * 2)
        registry.send_nowait("fresh", Note("1"))
        registry.send_nowait("fresh", Note("2"))  # not received yet: no checkpoint
        stats = registry.statistics()
    assert stats.name == "threads"
    assert (stats.live, stats.spawned, stats.passivated) == (2, 3, 1)
    assert (stats.restarts, stats.failed, stats.queued) == (1, 0, 2)
