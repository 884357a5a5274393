"""The operator's Matrix commands: `ganglion matrix trust` and `ganglion matrix
reset-identity`. Both work while the daemon runs.

    ganglion matrix trust @me:example.org     pin the user's current identity
    ganglion matrix reset-identity [--yes]    a new identity and recovery key for the bot

`trust` asks the homeserver (as the bot) for the user's published master key and pins
it in the store directory's pin store (`ganglion.matrix.pins`), which the daemon reads
for every decision: the next message from a device signed by that identity is answered.

`reset-identity` makes a new cross-signing identity for the bot account, replacing the
published one (the homeserver asks for the bot's password: `matrix.password`, or typed
at the prompt), signs the bot's device with it, stores it in secret storage under a new
recovery key and hands that key out as at first start (`ganglion.matrix.identity`).

Error handling: every failure is one `AdminError` line for the terminal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx
import trio
from pydantic import SecretStr

from ganglion.config import Config
from ganglion.matrix.errors import MatrixError

__all__ = ["RESET_WARNING", "AdminError", "Pinned", "reset_identity", "trust_user"]

TIMEOUT_SECONDS: Final = 30.0
RESET_WARNING: Final = (
    "This makes a new cross-signing identity for the bot {bot}, replacing the one it "
    "has. In Element, the owner then sees that the bot's identity was reset: a warning "
    "in the rooms shared with it, and its messages shown as from an unverified identity "
    "until the owner accepts (or verifies) the new one. The old recovery key stops "
    "working; a new one is handed out."
)


class AdminError(Exception):
    """A Matrix command failed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Pinned:
    user_id: str
    master_key: str
    previous: str | None
    signed_devices: tuple[str, ...]


async def trust_user(config: Config, user_id: str) -> Pinned:
    """Pin `user_id`'s published master key (see the module docstring)."""
    from ganglion.matrix.actor import store_dir_for
    from ganglion.matrix.pins import PinStore
    from ganglion.matrix.trust import decide, device_sender, user_keys

    answer = await _keys_query(config, user_id)
    keys = user_keys(answer, user_id)
    if keys.master is None:
        raise AdminError(
            f"{user_id} publishes no cross-signing identity: set it up in Element "
            "(Settings > Encryption), then run this again"
        )
    signed = tuple(
        sorted(
            device_id
            for device_id in keys.devices
            if decide(keys, device_sender(keys, device_id), keys.master).trusted
        )
    )
    store = PinStore(store_dir_for(config.matrix, config.data_dir))
    try:
        await trio.to_thread.run_sync(lambda: store.path.parent.mkdir(mode=0o700, exist_ok=True))
        previous = await trio.to_thread.run_sync(store.pin, user_id, keys.master)
    except (OSError, sqlite3.Error) as exc:
        raise AdminError(f"cannot write {store.path}: {exc}") from None
    return Pinned(user_id, keys.master, previous, signed)


async def reset_identity(config: Config, password: Callable[[], str | None]) -> str:
    """Replace the bot's identity (see the module docstring); `password` is asked only
    when `matrix.password` is not set. Returns the new master key."""
    import nio

    from ganglion.matrix.actor import load_or_create_pickle_key, store_dir_for
    from ganglion.matrix.http import REQUEST_TIMEOUT, Homeserver
    from ganglion.matrix.identity import Identity

    matrix = config.matrix
    assert matrix.homeserver is not None
    assert matrix.access_token is not None
    base, token = matrix.homeserver, matrix.access_token.get_secret_value()
    if matrix.password is None:
        typed = password()
        if typed:
            matrix = matrix.model_copy(update={"password": SecretStr(typed)})
    store_dir = store_dir_for(matrix, config.data_dir)
    try:
        pickle_key = await trio.to_thread.run_sync(
            load_or_create_pickle_key, config.data_dir, matrix
        )
    except OSError as exc:
        raise AdminError(f"cannot read the pickle key in {config.data_dir}: {exc}") from None
    client = nio.Client(matrix.user_id or "", matrix.device_id)
    client.access_token = token
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False) as http:
        identity = Identity(
            Homeserver(client, http, base),
            matrix,
            store_dir=store_dir,
            data_dir=config.data_dir,
            pickle_key=pickle_key,
        )
        try:
            with trio.fail_after(TIMEOUT_SECONDS * 4):
                state = await identity.reset()
        except MatrixError as exc:
            raise AdminError(str(exc)) from None
        except trio.TooSlowError:
            raise AdminError(f"{base} did not answer in time") from None
    if state.problem is not None or state.master_key is None:
        raise AdminError(state.problem or "the new identity was not published")
    return state.master_key


async def _keys_query(config: Config, user_id: str) -> dict[str, object]:
    matrix = config.matrix
    assert matrix.homeserver is not None
    assert matrix.access_token is not None
    headers = {"Authorization": f"Bearer {matrix.access_token.get_secret_value()}"}
    try:
        with trio.fail_after(TIMEOUT_SECONDS):
            async with httpx.AsyncClient(
                base_url=matrix.homeserver, headers=headers, trust_env=False
            ) as http:
                reply = await http.post(
                    "/_matrix/client/v3/keys/query", json={"device_keys": {user_id: []}}
                )
    except (httpx.HTTPError, trio.TooSlowError) as exc:
        raise AdminError(f"{matrix.homeserver} cannot be reached ({type(exc).__name__})") from None
    if reply.status_code != 200:
        raise AdminError(f"the homeserver's /keys/query answered HTTP {reply.status_code}")
    answer = reply.json()
    if not isinstance(answer, dict):
        raise AdminError("the homeserver's /keys/query answer is not JSON")
    return answer
