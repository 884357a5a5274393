"""What the Matrix interface reports of itself (`MatrixStatistics`): syncs, sync errors
by kind, undecryptable events and the encryption state, as `ganglion status` and
`/metrics` show them. The homeserver is an httpx mock transport; nio is real."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ganglion.config import MatrixConfig
from ganglion.matrix.actor import Connection
from ganglion.matrix.errors import (
    MatrixAuthError,
    MatrixRequestError,
    MatrixSetupError,
    MatrixUnavailable,
)
from ganglion.matrix.stats import ERROR_KINDS, HIDDEN, IdentityState, MatrixStatistics, error_kind
from ganglion.matrix.trust import REFUSALS
from ganglion.ops.metrics import _DaemonCollector
from ganglion.ops.status import matrix_status
from ganglion.ops.statustext import render
from tests.test_matrix_sync import BOT, OWNER, Backend, Server, sync_body, sync_loop, text

TOKEN = "syt_secret_token_value"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.5

    def __call__(self) -> float:
        return self.now


def megolm(event_id: str) -> dict[str, Any]:
    """An encrypted event whose Megolm session nobody shared with the bot."""
    return {
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": OWNER,
        "origin_server_ts": 1,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": "a" * 43,
            "ciphertext": "AwgAEnB",
            "session_id": "unknown-session",
            "device_id": "OWNERPHONE",
        },
    }


class KeysServer(Server):
    """Also answers the key queries and key requests an undecryptable event causes."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/keys/query"):
            return httpx.Response(200, json={"device_keys": {}, "failures": {}})
        return super().__call__(request)


def matrix_config(**more: Any) -> MatrixConfig:
    return MatrixConfig.model_validate(
        {
            "homeserver": "https://hs.example",
            "user_id": BOT,
            "access_token": TOKEN,
            "device_id": "BOTDEVICE",
            "allowed_users": [OWNER],
            **more,
        }
    )


def test_each_error_is_counted_under_its_kind() -> None:
    assert error_kind(MatrixUnavailable("down")) == "unavailable"
    assert error_kind(MatrixAuthError("no", errcode="M_UNKNOWN_TOKEN")) == "auth"
    assert error_kind(MatrixRequestError("no", errcode="M_FORBIDDEN")) == "refused"
    assert error_kind(MatrixSetupError("wrong device")) == "setup"


def test_the_state_follows_syncs_and_errors() -> None:
    clock = Clock()
    stats = MatrixStatistics(clock=clock)
    assert stats.state == "stopped"
    stats.started("BOTDEVICE")
    assert stats.state == "starting"
    stats.synced(joined_rooms=2, one_time_keys=50)
    assert (stats.state, stats.last_sync_at, stats.joined_rooms) == ("syncing", clock.now, 2)
    clock.now += 30
    stats.failed(MatrixUnavailable("cannot reach the homeserver"), access_token=TOKEN)
    stats.failed(MatrixUnavailable("cannot reach the homeserver"), access_token=TOKEN)
    assert (stats.state, stats.consecutive_errors, stats.errors["unavailable"]) == (
        "retrying",
        2,
        2,
    )
    stats.synced(joined_rooms=2, one_time_keys=None)
    assert (stats.state, stats.consecutive_errors, stats.one_time_keys) == ("syncing", 0, 50)
    assert stats.last_error == "cannot reach the homeserver"  # kept after recovery
    stats.stopped()
    assert stats.state == "stopped"


def test_the_last_error_is_one_short_line_without_the_token() -> None:
    stats = MatrixStatistics()
    stats.failed(MatrixRequestError(f"refused\n{TOKEN} " + "x" * 500), access_token=TOKEN)
    assert stats.last_error is not None
    assert "\n" not in stats.last_error and len(stats.last_error) <= 240
    assert TOKEN not in stats.last_error
    assert stats.last_error.startswith(f"refused {HIDDEN} xxx")


async def test_a_sync_records_rooms_keys_and_undecryptable_events() -> None:
    stats = MatrixStatistics()
    backend = Backend()
    server = KeysServer(sync_body("t1", [megolm("$secret"), text("$plain", "hello")]))
    loop, _ = sync_loop(server, backend, "t0")
    loop.stats = stats
    await loop.sync_once()
    assert (stats.syncs, stats.joined_rooms, stats.one_time_keys) == (1, 1, 50)
    assert (stats.undecryptable, stats.submitted) == (1, 1)
    assert [m.message_id for m in backend.submitted] == ["$plain"]


async def test_sync_errors_are_counted_and_the_next_sync_clears_the_streak(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The connection loop's failures (here: the homeserver down twice, then a refused
    sync) are counted by kind; a sync that succeeds resets the streak, not the totals."""
    answers: list[httpx.Response] = [httpx.Response(503), httpx.Response(503)]
    syncs: list[httpx.Response] = [
        httpx.Response(403, json={"errcode": "M_FORBIDDEN", "error": "no"}),
        httpx.Response(200, json=sync_body("t1", [])),
    ]
    second_sync = trio.Event()

    async def homeserver(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/account/whoami"):
            if answers:
                return answers.pop(0)
            return httpx.Response(200, json={"user_id": BOT, "device_id": "BOTDEVICE"})
        if path.endswith("/sync"):
            if not syncs:
                second_sync.set()
                await trio.sleep_forever()
            return syncs.pop(0)
        if path.endswith("/keys/upload"):
            return httpx.Response(200, json={"one_time_key_counts": {"signed_curve25519": 50}})
        return httpx.Response(200, json={})

    stats = MatrixStatistics()
    config = matrix_config(pickle_key="a-test-pickle-key")
    async with httpx.AsyncClient(transport=httpx.MockTransport(homeserver)) as http:
        connection = Connection(config, tmp_path, Backend(), http, stats)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.run)
            await second_sync.wait()
            nursery.cancel_scope.cancel()
    assert dict(stats.errors) == {"unavailable": 2, "refused": 1}
    assert (stats.syncs, stats.consecutive_errors, stats.state) == (1, 0, "stopped")
    assert stats.last_error is not None and "M_FORBIDDEN" in stats.last_error
    assert stats.ed25519_key is not None  # the store was opened: the device's key is known
    assert TOKEN not in repr(stats)


def test_status_shows_the_sync_state_errors_and_encryption() -> None:
    clock = Clock()
    stats = MatrixStatistics(clock=clock)
    stats.started("BOTDEVICE")
    stats.ed25519_key = "ed25519key"
    stats.synced(joined_rooms=3, one_time_keys=49)
    stats.failed(MatrixUnavailable("cannot reach the homeserver"), access_token=TOKEN)
    stats.undecryptable = 2
    clock.now += 90
    matrix = matrix_status(matrix_config(), stats)
    assert matrix["last_sync_age_seconds"] == 90
    text = render(_snapshot_with(matrix))
    assert f"Matrix {BOT} on https://hs.example: retrying, last sync 90 s ago (1 syncs)" in text
    assert "  3 joined rooms;" in text
    assert "  sync errors: unavailable 1; 1 in a row" in text
    assert "  last error (90 s ago): cannot reach the homeserver" in text
    assert "  undecryptable events: 2 (0 decrypted once their keys arrived)" in text
    assert "  encryption: device BOTDEVICE, ed25519 ed25519key, 49 one-time keys" in text


def test_metrics_carry_the_matrix_counters_without_room_labels() -> None:
    clock = Clock()
    stats = MatrixStatistics(clock=clock)
    stats.started("BOTDEVICE")
    stats.synced(joined_rooms=1, one_time_keys=50)
    stats.failed(MatrixAuthError("token", errcode="M_UNKNOWN_TOKEN"), access_token=TOKEN)
    stats.undecryptable = 4
    stats.refused_by_trust["unsigned_device"] += 2
    stats.pinned_identities = 1
    stats.identity = IdentityState(published=True, device_signed=True, master_key="M")
    stats.requests.update({"sync": 3, "rooms/send": 1})
    config = SimpleNamespace(matrix=SimpleNamespace(enabled=True))
    view: Any = SimpleNamespace(services=SimpleNamespace(matrix=stats, config=config))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OnlyMatrix(view))
    exposed = generate_latest(registry).decode()
    found = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
    }
    assert found["ganglion_matrix_syncs_total", ()] == 1
    assert found["ganglion_matrix_sync_errors_total", ("auth",)] == 1
    assert found["ganglion_matrix_sync_errors_total", ("unavailable",)] == 0
    assert found["ganglion_matrix_consecutive_sync_errors", ()] == 1
    assert found["ganglion_matrix_last_sync_timestamp_seconds", ()] == clock.now
    assert found["ganglion_matrix_undecryptable_events_total", ()] == 4
    assert found["ganglion_matrix_up", ()] == 0
    assert found["ganglion_matrix_one_time_keys", ()] == 50
    assert found["ganglion_matrix_refused_by_trust_total", ("unsigned_device",)] == 2
    assert found["ganglion_matrix_refused_by_trust_total", ("identity_changed",)] == 0
    assert found["ganglion_matrix_pinned_identities", ()] == 1
    assert found["ganglion_matrix_verified_devices_only", ()] == 1
    assert found["ganglion_matrix_device_signed", ()] == 1
    assert found["ganglion_matrix_recovery_key_set", ()] == 0
    assert found["ganglion_matrix_requests_total", ("sync",)] == 3
    assert found["ganglion_matrix_requests_total", ("rooms/send",)] == 1
    endpoints = {("sync",), ("rooms/send",)}
    closed = {(), *((kind,) for kind in ERROR_KINDS), *((why,) for why in REFUSALS), *endpoints}
    assert {labels for _, labels in found} <= closed


class _OnlyMatrix(_DaemonCollector):
    def __init__(self, view: Any) -> None:
        super().__init__(view, {})

    def collect(self) -> Any:
        return self._matrix()


def _snapshot_with(matrix: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "test",
        "uptime_seconds": 1,
        "draining": False,
        "actors": [],
        "threads": {"live": 0, "spawned": 0, "passivated": 0, "restarts": 0, "recent": []},
        "turns": {"started": 0, "answered": 0, "failed": 0, "latency_seconds": 0, "system": {}},
        "tools": [],
        "heartbeat": {"beats": 0, "reviews": {}, "skipped": {}, "tokens": 0},
        "reminders": {"active": 0, "ledger": {}, "next": []},
        "model": {
            "endpoint": "http://x/v1",
            "model": "m",
            "requests": 0,
            "answered": 0,
            "retries": 0,
            "fallbacks_used": 0,
            "errors": {},
            "latency_seconds": 0,
            "tokens_in": 0,
            "tokens_out": 0,
        },
        "matrix": matrix,
    }
