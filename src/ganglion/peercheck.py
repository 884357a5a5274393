"""Who is at the other end of a loopback connection: the client commands prove that the
daemon they reach is the owner's before they send it the web token.

With the daemon stopped, any local user may listen on its port; a client that sent
`Authorization: Bearer <token>` to whatever answers would hand that user a shell. So
`ganglion chat` and `ganglion status` connect first, then look their connection up in the
kernel's socket table (`/proc/net/tcp`, `/proc/net/tcp6`): the server's end of it (a
connection not yet accepted is listed too, with the listening socket's owner) names the
uid that owns the listening socket. Only a uid in the allowed set (the user running the
command, and the owner of the data directory) gets the token; anything else, or a
connection the table does not show, is refused before a byte is sent.

Checking the very connection that will carry the token leaves no gap between the check
and the use (nothing is checked by address and then connected to again).

Linux only (the daemon's platform). Pure standard library: the client commands import
this without pydantic or the daemon.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from ganglion.errors import GanglionError

__all__ = [
    "LocalDaemon",
    "PeerError",
    "check_daemon_socket",
    "connect_checked",
    "connection_owner",
    "owner_uids",
]

PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

_Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


class PeerError(GanglionError):
    """The listening socket is not the owner's, or cannot be told to be."""


@dataclass(frozen=True, slots=True)
class LocalDaemon:
    """The daemon as a client command reaches it: where it listens, its token, and
    whose listening socket may receive the token (`owner_uids`)."""

    host: str  # as in a URL: an IPv6 address in brackets
    port: int
    token: str
    owners: frozenset[int]

    @property
    def origin(self) -> str:
        return f"{self.host}:{self.port}"


def connect_checked(daemon: LocalDaemon, timeout: float) -> socket.socket:
    """A blocking TCP connection to `daemon` whose far end is a socket of its owners'
    (`PeerError` otherwise; `OSError` when nothing answers)."""
    sock = socket.create_connection((daemon.host.strip("[]"), daemon.port), timeout=timeout)
    try:
        check_daemon_socket(sock, daemon.owners)
    except PeerError:
        sock.close()
        raise
    return sock


def owner_uids(data_dir: Path) -> frozenset[int]:
    """Who may own the daemon's socket: the user running this command, and the owner of
    the data directory (a command run by root for a daemon of another user)."""
    uids = {os.geteuid()}
    with contextlib.suppress(OSError):  # no data directory yet: only this user
        uids.add(data_dir.stat().st_uid)
    return frozenset(uids)


def check_daemon_socket(sock: socket.socket, allowed: Collection[int]) -> None:
    """Refuse (`PeerError`) unless the server end of the connected `sock` belongs to a
    uid in `allowed`. Blocking (reads two small files in /proc): call it from a thread in
    async code."""
    local, remote = sock.getsockname(), sock.getpeername()
    uid = connection_owner(_address(remote), _address(local))
    where = f"{remote[0]}:{remote[1]}"
    if uid is None:
        raise PeerError(
            f"cannot tell who listens on {where} (no such connection in /proc/net/tcp): "
            "the token was not sent"
        )
    if uid not in allowed:
        raise PeerError(
            f"the server on {where} belongs to another user (uid {uid}), not to this "
            "Ganglion: the token was not sent. Is `ganglion run` running? Another local "
            "user may be holding its port."
        )


def connection_owner(server: _Address, client: _Address) -> int | None:
    """The uid of the server end of the connection `client` -> `server`, from the
    kernel's tables; None when it is not listed."""
    for table in PROC_TABLES:
        try:
            text = table.read_text()
        except OSError:
            continue
        for local, remote, uid in _rows(text):
            if local == server and remote == client:
                return uid
    return None


def _rows(text: str) -> Iterator[tuple[_Address, _Address, int]]:
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            yield _proc_address(fields[1]), _proc_address(fields[2]), int(fields[7])
        except ValueError:
            continue


def _proc_address(field: str) -> _Address:
    """`0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address is printed
    as 32-bit words in the kernel's byte order, the port as a number."""
    host, _, port = field.partition(":")
    words = [int(host[i : i + 8], 16) for i in range(0, len(host), 8)]
    packed = struct.pack(f"={len(words)}I", *words)
    return _normal(ipaddress.ip_address(packed)), int(port, 16)


def _address(name: tuple[str, int] | tuple[str, int, int, int]) -> _Address:
    return _normal(ipaddress.ip_address(name[0].split("%")[0])), int(name[1])


def _normal(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # A dual-stack listener lists IPv4 peers as ::ffff:a.b.c.d in tcp6.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
