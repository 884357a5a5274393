"""The Matrix interface actor: one bot account, every room it is invited into.

    await nursery.start(serve_matrix, config, data_dir, backend, inbox)

The tree runs it as an interface, `matrix_child`: it owns the `!room:server` threads'
delivery route while it runs and is restarted with backoff whenever it fails.

Start-up: opens the encryption store, checks the token with `whoami` (it must belong to
`matrix.user_id` and `matrix.device_id`), uploads the device keys (before any room is
joined, so the first message can be decrypted), makes, checks or restores the bot's
cross-signing identity and signs the device with it (`ganglion.matrix.identity`; a
problem there is logged once and the bot carries on unsigned), and reports started. A homeserver that
is down or a configuration that does not work never holds up the daemon: after one
attempt (at most `FIRST_CONNECT_WAIT` seconds) the actor reports started anyway, with one
clear log line saying what to do, and keeps trying in the background.

Then three tasks: the connection (`Connection.run`: sync after sync, see
`ganglion.matrix.sync`, with backoff and jitter after a failure), the delivery of
outbound events (`ganglion.matrix.outgoing`), until the mailbox ends (shutdown), and
the notices about messages whose keys did not come (`ganglion.matrix.latekeys`).
With `matrix.verified_devices_only` (the default) a `TrustGate` stands in front of
both the sync (what is answered) and the key sharing (who can read the replies), on
the pins kept in the store directory (`ganglion.matrix.pins`).

Error handling: every `MatrixError` is caught here, counted (`MatrixStatistics`, which
outlives the incarnations and is what `ganglion status` and `/metrics` read), reported
once (a repeat of the same failure is logged at debug level) and retried with backoff: `MatrixUnavailable` from
`BACKOFF` (0.5 s doubling to a minute), a token or setup problem from `SLOW_BACKOFF`
(30 s doubling to 10 minutes), never in a tight loop. None of them stops the web chat,
the reminders or the heartbeat.

Resource handling: the httpx client is opened and closed here; the encryption store
(nio's SQLite database in `store_dir`, in WAL mode) stays open for the life of the
process, its write-ahead log folded into it when the interface stops. nio's store writes
are short SQLite transactions made inline, as nio makes them.
"""

from __future__ import annotations

import logging
import random
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import nio
import trio

from ganglion.backend import ControlsBackend, interface_child
from ganglion.config import MatrixConfig
from ganglion.cookieless import CookielessClient
from ganglion.datadir import MATRIX_PICKLE_KEY_FILE, MATRIX_STORE_DIR
from ganglion.delivery import DeliveryRouter
from ganglion.inbox import FileInbox
from ganglion.matrix.answerlog import AnswerLog
from ganglion.matrix.answers import Answers
from ganglion.matrix.crypto import KeyKeeper
from ganglion.matrix.errors import (
    MatrixAuthError,
    MatrixError,
    MatrixRequestError,
    MatrixSetupError,
    MatrixUnavailable,
)
from ganglion.matrix.gate import TrustGate
from ganglion.matrix.http import REQUEST_TIMEOUT, Homeserver
from ganglion.matrix.identity import Identity
from ganglion.matrix.intake import MediaIntake
from ganglion.matrix.latekeys import LateKeys
from ganglion.matrix.niostore import LeanStore
from ganglion.matrix.outgoing import Outgoing
from ganglion.matrix.pins import PinStore
from ganglion.matrix.questions import Questions
from ganglion.matrix.stats import MatrixStatistics
from ganglion.matrix.sync import LONG_POLL_MS, SyncLoop
from ganglion.messages import Outbound
from ganglion.private import load_or_create_secret
from ganglion.safefs import SafePathError
from ganglion_actors import Backoff, ChildSpec, Inbox

__all__ = [
    "Connection",
    "load_or_create_pickle_key",
    "matrix_child",
    "serve_matrix",
    "store_dir_for",
]

log = logging.getLogger(__name__)

FIRST_CONNECT_WAIT: Final = 20.0
BACKOFF: Final = Backoff(initial=0.5, factor=2.0, maximum=60.0, jitter=0.2)
SLOW_BACKOFF: Final = Backoff(initial=30.0, factor=2.0, maximum=600.0, jitter=0.2)


def store_dir_for(config: MatrixConfig, data_dir: Path) -> Path:
    return config.store_dir or data_dir / MATRIX_STORE_DIR


def load_or_create_pickle_key(data_dir: Path, config: MatrixConfig) -> str:
    """The key that encrypts the Olm account and sessions at rest: the configured one,
    else the one kept in `<data_dir>/matrix_pickle_key` (0600), else a new one kept there.

    Error handling: `safefs.SafePathError` for a key file planted as a link.
    """
    configured = config.pickle_key.get_secret_value() if config.pickle_key is not None else None
    return load_or_create_secret(data_dir, MATRIX_PICKLE_KEY_FILE, configured)


def matrix_child(
    config: MatrixConfig,
    data_dir: Path,
    backend: ControlsBackend,
    router: DeliveryRouter,
    *,
    statistics: MatrixStatistics | None = None,
    files: FileInbox | None = None,
) -> ChildSpec[Outbound]:
    """Matrix as the root supervisor runs it: an interface (`interface_child`) that owns
    the `!room:server` threads, each incarnation a `serve_matrix` writing into the same
    `statistics` (what `ganglion status` and `/metrics` show); files in and out go
    through `files` (the inbox)."""
    serve = partial(serve_matrix, config, data_dir, backend, statistics=statistics, files=files)
    return interface_child("matrix", serve, router)


async def serve_matrix(
    config: MatrixConfig,
    data_dir: Path,
    backend: ControlsBackend,
    inbox: Inbox[Outbound],
    *,
    statistics: MatrixStatistics | None = None,
    files: FileInbox | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve Matrix until the mailbox ends (see the module docstring)."""
    stats = statistics if statistics is not None else MatrixStatistics()
    async with CookielessClient(timeout=REQUEST_TIMEOUT, follow_redirects=False) as http:
        connection = Connection(config, data_dir, backend, http, stats, files)
        stats.started(connection.device_id)
        try:
            with trio.move_on_after(FIRST_CONNECT_WAIT):
                try:
                    await connection.connect()
                except MatrixError as exc:
                    connection.report(exc)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connection.run)
                nursery.start_soon(connection.late_keys.serve)
                await connection.outgoing.serve(inbox)
                nursery.cancel_scope.cancel()
        finally:
            connection.checkpoint()
            stats.stopped()


class Connection:
    """The bot's session with its homeserver: nio client, sync loop, outgoing."""

    def __init__(
        self,
        config: MatrixConfig,
        data_dir: Path,
        backend: ControlsBackend,
        http: httpx.AsyncClient,
        stats: MatrixStatistics | None = None,
        files: FileInbox | None = None,
    ) -> None:
        # The config's validator guarantees these once Matrix is enabled.
        assert config.homeserver is not None
        assert config.user_id is not None
        assert config.access_token is not None
        assert config.device_id is not None
        self._config = config
        self._data_dir = data_dir
        self.device_id: str = config.device_id
        self.stats = stats if stats is not None else MatrixStatistics()
        self.store_dir = store_dir_for(config, data_dir)
        client: Any = nio.Client(config.user_id, config.device_id, str(self.store_dir))
        client.user_id = config.user_id
        client.access_token = config.access_token.get_secret_value()
        self.homeserver = Homeserver(client, http, config.homeserver, self.stats.requests)
        self.stats.verified_devices_only = config.verified_devices_only
        gate = (
            TrustGate(self.homeserver, PinStore(self.store_dir), self.stats)
            if config.verified_devices_only
            else None
        )
        self.keys = KeyKeeper(self.homeserver, gate)
        self.synced = trio.Event()
        self.answers = Answers(AnswerLog(self.store_dir))
        self.questions = Questions()
        self.outgoing = Outgoing(
            self.homeserver,
            self.keys,
            backend,
            self.synced,
            files,
            max_media_bytes=config.max_media_bytes,
            answers=self.answers,
            questions=self.questions,
        )
        self.late_keys = LateKeys(self.outgoing.notice, told=self._told_late_keys)
        self.sync = SyncLoop(
            self.homeserver,
            self.keys,
            config,
            backend,
            self.synced,
            self.outgoing.mark_read,
            self.stats,
            gate=gate,
            late_keys=self.late_keys,
            notify=self.outgoing.notice,
            intake=MediaIntake(self.homeserver, files, config.max_media_bytes)
            if files is not None
            else None,
            answers=self.answers,
            questions=self.questions,
        )
        self.connected = False
        self._pickle_key: str | None = None
        self._last_report: str | None = None
        self._random = random.Random()

    def checkpoint(self) -> None:
        """Fold the write-ahead logs of nio's store and answers.db into their files (WAL,
        `_tune_store`), so each `.db` holds all it knows while the daemon is stopped
        (copied or checked by `ganglion check`, it is the whole store). Short; the
        actor is ending."""
        self.answers.close()
        store = self.homeserver.client.store
        database = getattr(store, "database", None)
        if database is None:
            return
        try:
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:  # peewee's and sqlite's errors alike; nothing is lost
            log.warning("Matrix store: the write-ahead log was not folded in: %s", exc)

    def _told_late_keys(self) -> None:
        self.stats.late_key_notices += 1

    async def connect(self) -> None:
        """Check the token, open the encryption store, upload the keys.

        Error handling: `MatrixSetupError` for what the operator must fix,
        `MatrixAuthError` for a token that does not work, `MatrixUnavailable`.
        """
        await self._check_whoami()
        await self._open_store()
        await self.answers.open()
        try:
            await self.keys.upload_keys()
        except MatrixRequestError as exc:
            if "already exists" in str(exc):
                raise MatrixSetupError(
                    f"the homeserver already holds keys for device {self._config.device_id} "
                    f"that the store in {self.store_dir} does not have: the store was lost or "
                    "belongs to another installation; restore it, or log in again to get a "
                    "new device id and set matrix.device_id to it"
                ) from None
            raise
        log.info(
            "Matrix: logged in as %s (device %s), keys uploaded",
            self._config.user_id,
            self._config.device_id,
        )
        await self._ensure_identity()
        self.connected = True

    async def _ensure_identity(self) -> None:
        assert self._pickle_key is not None  # the store is open
        identity = Identity(
            self.homeserver,
            self._config,
            store_dir=self.store_dir,
            data_dir=self._data_dir,
            pickle_key=self._pickle_key,
        )
        state = await identity.ensure()
        previous = self.stats.identity
        self.stats.identity = state
        # Reported once, not at every reconnection: the bot works meanwhile, unsigned.
        if state.problem is not None and (previous is None or previous.problem != state.problem):
            log.error("Matrix: %s", state.problem)

    async def run(self) -> None:
        """Sync for ever: connect when not connected, then sync after sync; after a
        failure wait (backoff with jitter) and try again."""
        attempt = 0
        while True:
            try:
                if not self.connected:
                    await self.connect()
                # Back from a failure, or with replies waiting: a quick sync first, so
                # they go out now rather than after a long poll.
                waiting = self._last_report is not None or self.outgoing.needs_sweep
                await self.sync.sync_once(0 if waiting else LONG_POLL_MS)
                if self.outgoing.needs_sweep:
                    await self.outgoing.sweep()
            except MatrixError as exc:
                self.report(exc)
                backoff = BACKOFF if isinstance(exc, MatrixUnavailable) else SLOW_BACKOFF
                await trio.sleep(backoff.delay(attempt, self._random))
                attempt += 1
                continue
            if self._last_report is not None:
                log.info("Matrix: connected to %s again", self._config.homeserver)
                self._last_report = None
            attempt = 0

    def report(self, exc: MatrixError) -> None:
        """Count a failure, and log it once: the same failure again is logged at debug
        level."""
        self.stats.failed(exc, access_token=self.homeserver.client.access_token)
        message = str(exc)
        if message == self._last_report:
            log.debug("Matrix: still failing: %s", message)
            return
        self._last_report = message
        if isinstance(exc, MatrixUnavailable):
            log.warning("Matrix: %s; retrying with backoff", message)
        else:
            log.error("Matrix: %s; retrying with backoff", message)

    async def _check_whoami(self) -> None:
        client = self.homeserver.client
        try:
            whoami = await self.homeserver.request(
                nio.WhoamiResponse, nio.Api.whoami(client.access_token)
            )
        except MatrixAuthError:
            raise
        except MatrixRequestError as exc:
            raise MatrixSetupError(
                f"{self._config.homeserver} did not answer like a Matrix homeserver ({exc}): "
                "check matrix.homeserver (the client API's base URL, e.g. "
                "https://matrix.example.org)"
            ) from None
        if whoami.user_id != self._config.user_id:
            raise MatrixSetupError(
                f"the access token belongs to {whoami.user_id}, not to matrix.user_id "
                f"{self._config.user_id}: fix one of them"
            )
        if whoami.device_id and whoami.device_id != self._config.device_id:
            raise MatrixSetupError(
                f"the access token belongs to device {whoami.device_id}, not to "
                f"matrix.device_id {self._config.device_id}: set device_id: "
                f"{whoami.device_id}"
            )
        # whoami's answer may have changed nio's idea of the device; keep ours.
        client.device_id = self._config.device_id

    async def _open_store(self) -> None:
        client = self.homeserver.client
        if client.store is not None:
            return
        try:
            pickle_key = await trio.to_thread.run_sync(
                load_or_create_pickle_key, self._data_dir, self._config
            )
            await trio.to_thread.run_sync(
                lambda: self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            )
        except (OSError, SafePathError) as exc:
            raise MatrixSetupError(
                f"cannot prepare the Matrix store ({exc}): check the permissions of "
                f"{self.store_dir} and {self._data_dir}"
            ) from None
        self._pickle_key = pickle_key
        client.config = nio.ClientConfig(
            store=LeanStore,
            store_sync_tokens=False,
            pickle_key=pickle_key,
            encryption_enabled=True,
        )
        try:
            client.load_store()
        except Exception as exc:  # nio and peewee raise many kinds; this is the edge
            client.store = client.olm = None
            raise MatrixSetupError(
                f"cannot open the Matrix encryption store in {self.store_dir} "
                f"({type(exc).__name__}: {exc}): check its permissions; if it belongs to "
                "another device or its pickle_key changed, move it away and use a new "
                "device id"
            ) from None
        _tune_store(client.store)
        self.stats.ed25519_key = client.olm.account.identity_keys["ed25519"]


def _tune_store(store: Any) -> None:
    """nio's store commits after every sync and every Olm message: in WAL mode with
    `synchronous=NORMAL` a commit needs no fsync. A kill loses nothing committed; a power
    cut may lose the last commits (a sync token, given again; Olm sessions, recovered by
    a new one). Every connection gets it, in any thread (peewee's permanent pragmas)."""
    database = getattr(store, "database", None)
    if database is None or not hasattr(database, "pragma"):
        return
    database.pragma("journal_mode", "wal", permanent=True)
    database.pragma("synchronous", "normal", permanent=True)
