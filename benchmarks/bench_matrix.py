"""Matrix round trips: the owner's encrypted message to the decrypted reply.

A real Synapse (the one `nox -s bench` installs, as `nox -s e2e` does), a real
`ganglion run` process (tests/live.py) and a zero-latency fake model that answers
`echo: <message>`. The owner is a real matrix-nio client (tests/support/matrix_human.py).
Measured: `ROUND_TRIPS` messages one after another in one encrypted room (p50, p99),
then `ROOMS` encrypted rooms talking at once, `PER_ROOM` messages each.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.e2e.people import PASSWORD
from tests.support.fakellm import Reply, open_fake_llm
from tests.support.live import open_live_daemon
from tests.support.matrix_human import MatrixHuman, open_human
from tests.support.synapse import open_synapse, synapse_python

ROUND_TRIPS = 200
ROOMS = 10
PER_ROOM = 20


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


async def _run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with (
            open_synapse(synapse_python(), root / "synapse") as synapse,
            open_fake_llm(responder=_echo) as llm,
        ):
            owner_account = await synapse.register(f"owner-{secrets.token_hex(4)}", PASSWORD)
            bot = await synapse.register(f"bot-{secrets.token_hex(4)}", PASSWORD)
            matrix = {
                "homeserver": synapse.base_url,
                "user_id": bot.user_id,
                "access_token": bot.access_token,
                "device_id": bot.device_id,
                "allowed_users": [owner_account.user_id],
            }
            async with (
                open_live_daemon(
                    root,
                    llm.base_url,
                    matrix=matrix,
                    logging={"level": "WARNING", "dir": "/tmp/mxperf"},
                ),
                open_human(
                    synapse.base_url,
                    owner_account.user_id,
                    PASSWORD,
                    device_id="OWNERPHONE",
                    store_dir=root / "owner",
                ) as owner,
            ):
                rooms = []
                for _ in range(ROOMS):
                    room_id = await owner.create_room(encrypted=True, invite=[bot.user_id])
                    await owner.wait_for_membership(room_id, bot.user_id)
                    rooms.append(room_id)
                first = await _round_trip(owner, bot.user_id, rooms[0], "warm up")
                sequential = [
                    await _round_trip(owner, bot.user_id, rooms[0], f"message {i}")
                    for i in range(ROUND_TRIPS)
                ]
                concurrent: list[float] = []

                async def talk(room_id: str) -> None:
                    for i in range(PER_ROOM):
                        text = f"{room_id[:6]} {i}"
                        concurrent.append(await _round_trip(owner, bot.user_id, room_id, text))

                started = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for room_id in rooms:
                        nursery.start_soon(talk, room_id)
                wall = time.perf_counter() - started
    return {
        "first_round_trip_ms": round(first * 1000, 1),
        "one_room": _summary(sequential),
        f"{ROOMS}_rooms_at_once": {
            **_summary(concurrent),
            "messages_per_second": round(len(concurrent) / wall, 1),
        },
    }


def main() -> dict[str, Any]:
    return trio.run(_run)


if __name__ == "__main__":
    print(main())
