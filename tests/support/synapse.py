"""A real Synapse homeserver for tests, on a free loopback port.

Synapse lives in a virtualenv of its own (its dependency pins must not mix with
Ganglion's): `uv run nox -s e2e` installs it and names that virtualenv's python in
`GANGLION_SYNAPSE_PYTHON`. Everything else happens here:

    server = await prepare_synapse(synapse_python(), tmp_path)   # config, no process yet
    await server.start()                 # ready when /_matrix/client/versions answers
    alice = await server.register("alice", "secret")
    await server.restart()               # same port, same database: users and rooms stay
    await server.stop()                  # SIGTERM, SIGKILL after a grace

or `async with open_synapse(python, directory) as server:` for one owned by a trio task.

Resource handling: the server is a plain `subprocess.Popen`, tied to no event loop, so one
server can outlive the `trio.run` that started it. That is what a session-scoped pytest
fixture needs (pytest-trio gives each test its own trio run): the fixture starts it with
`trio.run(server.start)`, tests talk to it and may restart it from their own runs, and
the fixture stops it at the end. Every wait (readiness, exit, HTTP) has a deadline.

Error handling: a server that cannot be configured, exits at start-up or is not ready in
time raises `SynapseError` with the tail of its output and of its log; it never skips.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import trio
import yaml

from tests.support.live import free_port
from tests.support.process import log_tail, side_python, terminate

__all__ = [
    "SYNAPSE_PYTHON_ENV",
    "Account",
    "Synapse",
    "SynapseError",
    "open_synapse",
    "prepare_synapse",
    "synapse_python",
]

SYNAPSE_PYTHON_ENV: Final = "GANGLION_SYNAPSE_PYTHON"
SERVER_NAME: Final = "localhost"
START_TIMEOUT: Final = 60.0
STOP_GRACE: Final = 10.0
HTTP_TIMEOUT: Final = 10.0

# Every rate limit Synapse has, as (setting, sub-keys); tests send in bursts.
_RATE_LIMITS: Final[dict[str, tuple[str, ...]]] = {
    "rc_message": (),
    "rc_registration": (),
    "rc_registration_token_validity": (),
    "rc_login": ("address", "account", "failed_attempts"),
    "rc_joins": ("local", "remote"),
    "rc_joins_per_room": (),
    "rc_invites": ("per_room", "per_user", "per_issuer"),
    "rc_room_creation": (),
    "rc_key_requests": (),
    "rc_3pid_validation": (),
    "rc_admin_redaction": (),
    "rc_user_directory": (),
    "rc_presence": ("per_user",),
    "rc_delayed_event_mgmt": (),
    "rc_media_create": (),
    "rc_reports": (),
}
_UNLIMITED: Final = {"per_second": 100_000, "burst_count": 1_000_000}


class SynapseError(Exception):
    """Synapse could not be configured, started, stopped or asked for something."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user registered through the shared-secret admin API, with the device (and its
    access token) that registration created: what a bot's configuration needs."""

    user_id: str
    password: str
    access_token: str
    device_id: str


def synapse_python() -> Path:
    """The python of the virtualenv Synapse is installed in (see `noxfile.py`)."""
    return side_python(SYNAPSE_PYTHON_ENV, "e2e", "Synapse", SynapseError)


def _tail(path: Path, lines: int = 40) -> str:
    return log_tail(path, lines)


def _log_config(log_file: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {
            "precise": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_file),
                "encoding": "utf8",
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def _test_settings(directory: Path, port: int, shared_secret: str) -> dict[str, Any]:
    """What a test homeserver changes in Synapse's generated configuration."""
    rate_limits: dict[str, Any] = {
        name: ({key: _UNLIMITED for key in keys} if keys else _UNLIMITED)
        for name, keys in _RATE_LIMITS.items()
    }
    return {
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "log_config": str(directory / "log.config"),
        "registration_shared_secret": shared_secret,
        "enable_registration": False,
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        # Password hashing at Synapse's default cost makes every login take a quarter second.
        "bcrypt_rounds": 4,
        **rate_limits,
    }


class Synapse:
    """One Synapse process at a time over one configuration and database.

    Created by `prepare_synapse`; `start`, `stop` and `restart` may be called from any
    trio run, one at a time.
    """

    def __init__(self, python: Path, directory: Path, port: int, shared_secret: str) -> None:
        self.python = python
        self.directory = directory
        self.port = port
        self.shared_secret = shared_secret
        self.base_url = f"http://127.0.0.1:{port}"
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (WARNING and above)."""
        return self.directory / "homeserver.log"

    @property
    def output_path(self) -> Path:
        """What the last start wrote to stdout and stderr (start-up errors land here)."""
        return self.directory / f"run-{self.starts}.out"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The running Synapse's process id (what a benchmark reads its CPU time from)."""
        assert self._process is not None and self._process.poll() is None, "Synapse is down"
        return self._process.pid

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{SERVER_NAME}"

    def diagnostics(self) -> str:
        """The tails of the last run's output and of Synapse's log, for error messages."""
        return f"{_tail(self.output_path)}\n{_tail(self.log_path)}"

    async def start(self) -> None:
        """Start Synapse and return once it answers `GET /_matrix/client/versions`.

        Raises `SynapseError` (with the tails of its output and log) if it exits or is
        not ready within `START_TIMEOUT`; a process that is not ready is killed.
        """
        if self.running:
            raise SynapseError("Synapse is already running")
        self.starts += 1
        command = [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)]
        with self.output_path.open("wb") as output:

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    command,
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )

            self._process = await trio.to_thread.run_sync(spawn)
        try:
            await self._wait_ready()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._terminate(grace=0)
            raise

    async def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        url = f"{self.base_url}/_matrix/client/versions"
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as http:
            with trio.move_on_after(START_TIMEOUT):
                while process.poll() is None:
                    try:
                        if (await http.get(url)).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)
                raise SynapseError(
                    f"Synapse exited with status {process.returncode} at start-up\n"
                    f"{self.diagnostics()}"
                )
        raise SynapseError(
            f"Synapse was not ready within {START_TIMEOUT:.0f} s\n{self.diagnostics()}"
        )

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `STOP_GRACE` seconds.

        Shielded from cancellation: a test that fails half-way still stops its server.
        """
        with trio.CancelScope(shield=True):
            await self._terminate(grace=STOP_GRACE)

    async def restart(self) -> None:
        """Stop and start again on the same port with the same database."""
        await self.stop()
        await self.start()

    async def _terminate(self, *, grace: float) -> None:
        if self._process is not None:
            await terminate(self._process, grace=grace, reap_within=STOP_GRACE)
        self._process = None

    async def register(self, localpart: str, password: str, *, admin: bool = False) -> Account:
        """Register a user with the shared-secret admin API (`/_synapse/admin/v1/register`)."""
        url = f"{self.base_url}/_synapse/admin/v1/register"
        with trio.fail_after(HTTP_TIMEOUT):
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as http:
                nonce_reply = await http.get(url)
                _raise_for_status(nonce_reply, "registration nonce")
                nonce = nonce_reply.json()["nonce"]
                reply = await http.post(
                    url,
                    json={
                        "nonce": nonce,
                        "username": localpart,
                        "password": password,
                        "admin": admin,
                        "mac": self._registration_mac(nonce, localpart, password, admin),
                    },
                )
        _raise_for_status(reply, f"registering {localpart}")
        body = reply.json()
        return Account(body["user_id"], password, body["access_token"], body["device_id"])

    def _registration_mac(self, nonce: str, localpart: str, password: str, admin: bool) -> str:
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        return mac.hexdigest()


def _raise_for_status(reply: httpx.Response, what: str) -> None:
    if reply.status_code != 200:
        raise SynapseError(f"{what}: HTTP {reply.status_code} {reply.text}")


async def prepare_synapse(python: Path, directory: Path) -> Synapse:
    """Generate a test homeserver's configuration in `directory` (created if needed).

    Synapse writes its own configuration (and signing key) first, then the settings a
    test server needs replace Synapse's: loopback only, a free port, SQLite, a random
    registration secret, no federation, no presence, no URL previews, no rate limits,
    WARNING and above logged to `homeserver.log`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "homeserver.yaml"
    with trio.fail_after(START_TIMEOUT):
        generated = await trio.run_process(
            [
                str(python),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
                str(config_path),
                "--data-directory",
                str(directory),
                "--generate-config",
                "--report-stats=no",
            ],
            cwd=directory,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if generated.returncode != 0:
        output = (generated.stdout + generated.stderr).decode(errors="replace")
        raise SynapseError(f"Synapse could not generate its configuration:\n{output}")
    port = free_port()
    shared_secret = secrets.token_urlsafe(32)
    config = yaml.safe_load(config_path.read_text())
    config.update(_test_settings(directory, port, shared_secret))
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "log.config").write_text(
        yaml.safe_dump(_log_config(directory / "homeserver.log"), sort_keys=False)
    )
    return Synapse(python, directory, port, shared_secret)


@asynccontextmanager
async def open_synapse(python: Path, directory: Path) -> AsyncIterator[Synapse]:
    """A started homeserver, stopped (SIGTERM, then SIGKILL) when the block exits."""
    server = await prepare_synapse(python, directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
