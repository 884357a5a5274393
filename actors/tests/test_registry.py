"""The registry of dynamic children: spawn on demand, idle passivation, restarts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio

from ganglion_actors import (
    ActorStopped,
    Backoff,
    ChildSpec,
    Inbox,
    Registry,
    Reply,
    open_supervisor,
)

IDLE = 60.0
FAST = Backoff(initial=1.0, factor=1.0, maximum=1.0, jitter=0.0)


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Ask:
    reply: Reply[list[str]]


@dataclass(frozen=True)
class Crash:
    pass


class World:
    """Per-key state that outlives incarnations, so tests can see what each one saw."""

    def __init__(self) -> None:
        self.notes: dict[str, list[str]] = {}
        self.incarnations: dict[str, int] = {}

    def spawn(self, key: str) -> Callable[[Inbox[object]], Awaitable[None]]:
        async def run(
            inbox: Inbox[object], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            self.incarnations[key] = self.incarnations.get(key, 0) + 1
            task_status.started()
            async for message in inbox:
                match message:
                    case Note(text):
                        self.notes.setdefault(key, []).append(text)
                    case Ask(reply):
                        reply.send(list(self.notes.get(key, [])))
                    case Crash():
                        raise RuntimeError(f"{key} crashed")

        return run


async def open_registry(nursery: trio.Nursery, world: World, **kw: object) -> Registry[str, object]:
    registry: Registry[str, object] = Registry(
        "threads", world.spawn, idle_timeout=IDLE, backoff=FAST, **kw
    )  # type: ignore[arg-type]
    await nursery.start(_host, registry)
    return registry


async def _host(registry: Registry[str, object], *, task_status: trio.TaskStatus[None]) -> None:
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec("threads", registry.serve))
        task_status.started()
        await trio.sleep_forever()


async def test_a_child_is_spawned_on_the_first_message(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    async with trio.open_nursery() as nursery:
        registry = await open_registry(nursery, world)
        assert registry.get("a") is None
        await registry.send("a", Note("hi"))
        assert await registry.ask("a", Ask) == ["hi"]
        assert registry.live_keys() == {"a"}
        assert world.incarnations == {"a": 1}
        nursery.cancel_scope.cancel()


async def test_an_idle_child_is_passivated_and_respawned_transparently(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    async with trio.open_nursery() as nursery:
        registry = await open_registry(nursery, world)
        await registry.send("a", Note("one"))
        await trio.sleep(IDLE / 2)
        assert registry.live_keys() == {"a"}
        await trio.sleep(IDLE * 2)
        assert registry.live_keys() == frozenset()
        assert registry.statistics().passivated == 1
        assert await registry.ask("a", Ask) == ["one"]
        assert world.incarnations == {"a": 2}
        nursery.cancel_scope.cancel()


async def test_a_busy_child_is_not_passivated(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    holding = trio.Event()

    def spawn(key: str) -> Callable[[Inbox[object]], Awaitable[None]]:
        async def run(inbox: Inbox[object]) -> None:
            inbox.set_busy(True)
            holding.set()
            async for _ in inbox:
                pass

        return run

    async with trio.open_nursery() as nursery:
        registry: Registry[str, object] = Registry("threads", spawn, idle_timeout=IDLE)
        await nursery.start(_host, registry)
        await registry.send("a", Note("x"))
        await holding.wait()
        await trio.sleep(IDLE * 10)
        assert registry.live_keys() == {"a"}
        nursery.cancel_scope.cancel()
    del world


async def test_no_message_is_lost_at_the_idle_boundary(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    async with trio.open_nursery() as nursery:
        registry = await open_registry(nursery, world)
        sent = []
        for i in range(40):
            # Land sends right around the moment the idle timer fires.
            await trio.sleep(IDLE - 0.5 + (i % 3) * 0.5)
            await registry.send("a", Note(str(i)))
            sent.append(str(i))
        assert await registry.ask("a", Ask) == sent
        nursery.cancel_scope.cancel()


async def test_a_crashed_child_restarts_with_its_mailbox_intact(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    async with trio.open_nursery() as nursery:
        registry = await open_registry(nursery, world)
        ref_before = None
        await registry.send("a", Note("before"))
        ref_before = registry.get("a")
        await registry.send("a", Crash())
        await registry.send("a", Note("queued during the restart"))
        assert await registry.ask("a", Ask) == ["before", "queued during the restart"]
        assert registry.get("a") is not None and ref_before is not None
        assert registry.get("a").name == ref_before.name  # type: ignore[union-attr]
        stats = registry.statistics()
        assert (stats.restarts, stats.failed, world.incarnations["a"]) == (1, 0, 2)
        nursery.cancel_scope.cancel()


async def test_a_crash_looping_child_is_given_up_without_escalating(
    autojump_clock: trio.abc.Clock,
) -> None:
    world = World()
    async with trio.open_nursery() as nursery:
        registry = await open_registry(nursery, world, intensity=2, period=60.0)
        for _ in range(3):
            await registry.send("bad", Crash())
            await trio.sleep(2)
        assert "bad" not in registry.live_keys()
        assert registry.statistics().failed == 1
        # the rest of the registry keeps working
        await registry.send("good", Note("fine"))
        assert await registry.ask("good", Ask) == ["fine"]
        nursery.cancel_scope.cancel()


async def test_sends_fail_clearly_when_the_registry_is_not_running() -> None:
    registry: Registry[str, object] = Registry("threads", World().spawn, idle_timeout=IDLE)
    with pytest.raises(ActorStopped, match="registry is not running"):
        await registry.send("a", Note("x"))


async def test_closing_the_host_drains_every_child(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    registry: Registry[str, object] = Registry("threads", world.spawn, idle_timeout=IDLE)
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec("threads", registry.serve))
        for key in ("a", "b"):
            registry.send_nowait(key, Note(f"last words of {key}"))
        await sup.shutdown(grace=5)
    assert world.notes == {"a": ["last words of a"], "b": ["last words of b"]}
    with pytest.raises(ActorStopped):
        await registry.send("a", Note("too late"))


async def test_registry_statistics(autojump_clock: trio.abc.Clock) -> None:
    world = World()
    async with trio.open_nursery() as nursery:
        registry = await open_registry(nursery, world)
        for key in ("a", "b", "c"):
            await registry.send(key, Note("x"))
        stats = registry.statistics()
        assert (stats.name, stats.live, stats.spawned, stats.passivated) == ("threads", 3, 3, 0)
        nursery.cancel_scope.cancel()
