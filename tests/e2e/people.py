"""What the Matrix end-to-end tests share besides fixtures: people's accounts and the
session's timings."""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from tests.support.matrix_human import MatrixHuman, open_human
from tests.support.synapse import Synapse

__all__ = ["PASSWORD", "Timings", "open_other_device", "open_person"]

PASSWORD = "correct horse battery staple"


class Timings:
    """Durations measured during the session, printed (never asserted) at its end."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def record(self, what: str, seconds: float) -> None:
        self.samples.setdefault(what, []).append(seconds)

    @contextmanager
    def measure(self, what: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.record(what, time.perf_counter() - started)

    def lines(self) -> list[str]:
        lines = []
        for what, samples in self.samples.items():
            ms = sorted(s * 1000 for s in samples)
            if len(ms) == 1:
                lines.append(f"{what}: {ms[0]:.0f} ms")
            else:
                lines.append(
                    f"{what}: first {samples[0] * 1000:.0f} ms, median "
                    f"{statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms over {len(ms)}"
                )
        return lines


@asynccontextmanager
async def open_person(
    synapse: Synapse, role: str, device_id: str, store_dir: Path, *, cross_signed: bool = True
) -> AsyncIterator[MatrixHuman]:
    """A new account named after `role`, logged in on `device_id`; with a
    cross-signing identity that has signed that device (as Element sets one up),
    unless `cross_signed` is False."""
    account = await synapse.register(f"{role}-{secrets.token_hex(4)}", PASSWORD)
    async with open_human(
        synapse.base_url, account.user_id, PASSWORD, device_id=device_id, store_dir=store_dir
    ) as human:
        if cross_signed:
            await human.publish_identity()
            await human.sign_device()
        yield human


@asynccontextmanager
async def open_other_device(
    person: MatrixHuman, device_id: str, store_dir: Path, *, signed: bool
) -> AsyncIterator[MatrixHuman]:
    """Another login of `person`'s account (a new phone), signed by their identity
    only when `signed`; `person.sign_device(device_id)` signs it later."""
    async with open_human(
        person.homeserver, person.user_id, PASSWORD, device_id=device_id, store_dir=store_dir
    ) as human:
        human.cross_signing = person.cross_signing
        if signed:
            await person.sign_device(device_id)
        yield human
