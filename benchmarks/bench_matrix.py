"""Matrix round trips beside their floor: the owner's encrypted message to the decrypted
reply, from Ganglion and from a client that answers at once (issue 35 item 1).

A real Synapse (the one `nox -s bench` installs, as `nox -s e2e` does), a real
`ganglion run` process (tests/live.py) with a zero-latency fake model that answers
`echo: <message>`, and the floor: `floor_bot.py`, a second matrix-nio process that
answers the same way with no model and no store, sending the read receipt and typing
notices Ganglion sends. The owner is a real matrix-nio client
(tests/support/matrix_human.py).

Measured in `ROUNDS` interleaved rounds (bot, floor, bot, floor...), each: `SEQUENTIAL`
messages one after another in one encrypted room, then `ROOMS` encrypted rooms at once,
`PER_ROOM` messages each. Reported: medians over the rounds of each round's p50, their
ratio (bot / floor), the CPU each answerer spent per message answered and what Synapse
spent per message for each (both from /proc), the bot's CPU over the floor's (the
floor is the same Python and nio on the same machine: a figure that other machines
can compare), the bot's requests to Synapse per message by endpoint (its /metrics),
and the load average during the run.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.e2e.people import PASSWORD, open_person
from tests.support.fakellm import Reply, open_fake_llm
from tests.support.live import open_live_daemon
from tests.support.matrix_human import MatrixHuman
from tests.support.synapse import open_synapse, synapse_python

ROUNDS = 3
SEQUENTIAL = 20
ROOMS = 5
PER_ROOM = 10
FLOOR_BOT = Path(__file__).parent / "floor_bot.py"
TICKS = os.sysconf("SC_CLK_TCK")


def _echo(body: dict[str, Any]) -> Reply:
    return Reply(f"echo: {body['messages'][-1]['content']}", chunk_size=64)


def _summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "count": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "max_ms": round(ms[-1], 1),
    }


async def _round_trip(owner: MatrixHuman, bot_id: str, room_id: str, text: str) -> float:
    started = time.perf_counter()
    await owner.send_text(room_id, text)
    reply = await owner.wait_for_message(room_id, bot_id)
    elapsed = time.perf_counter() - started
    if reply.body != f"echo: {text}" or not reply.encrypted:
        raise AssertionError(f"unexpected reply {reply}")
    return elapsed


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Answerer:
    """Who answers the owner (the bot, or the floor): its user id, its rooms and its
    process, with what its runs measured."""

    def __init__(
        self,
        name: str,
        user_id: str,
        rooms: list[str],
        pid: int,
        requests: Callable[[], Awaitable[Counter[str]]] | None = None,
    ) -> None:
        self.name, self.user_id, self.rooms, self.pid = name, user_id, rooms, pid
        self.requests = requests  # its requests to Synapse so far, by endpoint
        self.requested: Counter[str] = Counter()
        self.answered = 0
        self.sequential: list[dict[str, float]] = []
        self.concurrent: list[dict[str, float]] = []
        self.cpu_ms: list[float] = []
        self.synapse_cpu_ms: list[float] = []


async def _measured_round(owner: MatrixHuman, who: Answerer, synapse_pid: int, tag: str) -> None:
    """One round for `who`: `SEQUENTIAL` messages in its first room, then `ROOMS` rooms
    at once; its CPU and Synapse's over the round, per message."""
    requests_before = await who.requests() if who.requests is not None else Counter()
    cpu, synapse_cpu = _cpu_seconds(who.pid), _cpu_seconds(synapse_pid)
    sequential = [
        await _round_trip(owner, who.user_id, who.rooms[0], f"{tag} {i}") for i in range(SEQUENTIAL)
    ]
    concurrent: list[float] = []

    async def talk(room_id: str) -> None:
        for i in range(PER_ROOM):
            text = f"{tag} {room_id[:6]} {i}"
            concurrent.append(await _round_trip(owner, who.user_id, room_id, text))

    async with trio.open_nursery() as nursery:
        for room_id in who.rooms:
            nursery.start_soon(talk, room_id)
    answered = len(sequential) + len(concurrent)
    who.cpu_ms.append((_cpu_seconds(who.pid) - cpu) * 1000 / answered)
    who.synapse_cpu_ms.append((_cpu_seconds(synapse_pid) - synapse_cpu) * 1000 / answered)
    if who.requests is not None:
        who.requested += await who.requests() - requests_before
        who.answered += answered
    who.sequential.append(_summary(sequential))
    who.concurrent.append(_summary(concurrent))


async def _homeserver_requests(base_url: str, token: str) -> Counter[str]:
    """The daemon's requests to the homeserver so far, by endpoint (from /metrics)."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        reply = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        reply.raise_for_status()
    return Counter(
        {
            sample.labels["endpoint"]: int(sample.value)
            for family in text_string_to_metric_families(reply.text)
            for sample in family.samples
            if sample.name == "ganglion_matrix_requests_total"
        }
    )


def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 1)


def _figures(who: Answerer) -> dict[str, Any]:
    per_message = {
        endpoint: round(count / who.answered, 2)
        for endpoint, count in who.requested.most_common()
        if who.answered
    }
    return {
        **({"requests_per_message": per_message} if who.requests is not None else {}),
        "one_room_p50_ms": _median(who.sequential, "p50_ms"),
        "one_room_p99_ms": _median(who.sequential, "p99_ms"),
        f"{ROOMS}_rooms_p50_ms": _median(who.concurrent, "p50_ms"),
        f"{ROOMS}_rooms_p99_ms": _median(who.concurrent, "p99_ms"),
        "cpu_ms_per_message": round(statistics.median(who.cpu_ms), 1),
        "synapse_cpu_ms_per_message": round(statistics.median(who.synapse_cpu_ms), 1),
        "rounds": {"one_room": who.sequential, f"{ROOMS}_rooms": who.concurrent},
    }


async def _rooms(owner: MatrixHuman, user_id: str) -> list[str]:
    rooms = []
    for _ in range(ROOMS):
        room_id = await owner.create_room(encrypted=True, invite=[user_id])
        await owner.wait_for_membership(room_id, user_id)
        rooms.append(room_id)
    return rooms


async def _start_floor(synapse_url: str, user_id: str, store: Path, owner: str) -> trio.Process:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(FLOOR_BOT), synapse_url, user_id, PASSWORD, str(store), owner],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(60):
        while b"ready" not in seen:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"the floor bot exited at start:\n{seen.decode()}")
            seen += chunk
    return process


async def _run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with (
            open_synapse(synapse_python(), root / "synapse") as synapse,
            open_fake_llm(responder=_echo) as llm,
            open_person(synapse, "owner", "OWNERPHONE", root / "owner") as owner,
        ):
            bot = await synapse.register(f"bot-{secrets.token_hex(4)}", PASSWORD)
            floor = await synapse.register(f"floor-{secrets.token_hex(4)}", PASSWORD)
            matrix = {
                "homeserver": synapse.base_url,
                "user_id": bot.user_id,
                "access_token": bot.access_token,
                "device_id": bot.device_id,
                "allowed_users": [owner.user_id],
            }
            floor_process = await _start_floor(
                synapse.base_url, floor.user_id, root / "floor", owner.user_id
            )
            load_before = os.getloadavg()
            try:
                async with open_live_daemon(
                    root,
                    llm.base_url,
                    matrix=matrix,
                    logging={"level": "WARNING", "dir": str(root / "logs")},
                ) as live:
                    answerers = [
                        Answerer(
                            "bot",
                            bot.user_id,
                            await _rooms(owner, bot.user_id),
                            live.pid,
                            lambda: _homeserver_requests(live.base, live.token),
                        ),
                        Answerer(
                            "floor",
                            floor.user_id,
                            await _rooms(owner, floor.user_id),
                            floor_process.pid,
                        ),
                    ]
                    ganglion = answerers[0]
                    first = await _round_trip(owner, bot.user_id, ganglion.rooms[0], "warm up")
                    for who in answerers[1:]:
                        await _round_trip(owner, who.user_id, who.rooms[0], "warm up")
                    started = time.perf_counter()
                    for n in range(ROUNDS):
                        for who in answerers:
                            await _measured_round(owner, who, synapse.pid, f"r{n}")
                    wall = time.perf_counter() - started
                    load = os.getloadavg()
            finally:
                floor_process.kill()
                await floor_process.wait()
    bot_figures, floor_figures = (_figures(who) for who in answerers)
    messages = ROUNDS * len(answerers) * (SEQUENTIAL + ROOMS * PER_ROOM)
    return {
        "first_round_trip_ms": round(first * 1000, 1),
        "matrix_rt_ratio_1room": round(
            bot_figures["one_room_p50_ms"] / floor_figures["one_room_p50_ms"], 2
        ),
        f"matrix_rt_ratio_{ROOMS}rooms": round(
            bot_figures[f"{ROOMS}_rooms_p50_ms"] / floor_figures[f"{ROOMS}_rooms_p50_ms"], 2
        ),
        "matrix_cpu_ms_per_message": bot_figures["cpu_ms_per_message"],
        "matrix_cpu_vs_floor": round(
            bot_figures["cpu_ms_per_message"] / floor_figures["cpu_ms_per_message"], 2
        ),
        "matrix_synapse_cpu_ms_per_message": {
            "bot": bot_figures["synapse_cpu_ms_per_message"],
            "floor": floor_figures["synapse_cpu_ms_per_message"],
        },
        "bot": bot_figures,
        "floor": floor_figures,
        "messages": messages,
        "messages_per_second": round(messages / wall, 1),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load],
        },
    }


def main() -> dict[str, Any]:
    return trio.run(_run)


if __name__ == "__main__":
    print(main())
