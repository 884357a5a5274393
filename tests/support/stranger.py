"""Another local user, for the attacks that come from one: a real account made with
`useradd`, whose programs run with `runuser` under the system's own Python.

Making the account needs root. Where it cannot be made the tests that need it skip, and
say why; under CI (`CI` set) they fail instead, since a skip would hide the attack.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import trio

from tests.support.parts import unavailable

HOW = "run the suite as root on a machine with useradd, runuser and /usr/bin/python3"
NAME = "ganglion-stranger"
PYTHON = Path("/usr/bin/python3")


@dataclass(frozen=True)
class Stranger:
    """A local user who is not the owner."""

    name: str
    uid: int
    home: Path  # a directory the stranger may write in

    def argv(self, code: str) -> list[str]:
        return ["runuser", "-u", self.name, "--", str(PYTHON), "-c", code]

    async def run(self, code: str) -> subprocess.CompletedProcess[bytes]:
        """Run Python `code` as the stranger, to completion (a minute at most)."""
        with trio.fail_after(60):
            return await trio.run_process(
                self.argv(code), capture_stdout=True, capture_stderr=True, check=False
            )


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"another local user is needed for this test and {reason}", HOW)


def make_stranger() -> Stranger:
    """The stranger's account (made once per machine), and a fresh directory of theirs."""
    if os.geteuid() != 0:
        _unavailable("only root can make one (useradd)")
    for tool in ("useradd", "runuser"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is missing")
    if not PYTHON.exists():
        _unavailable(f"{PYTHON} is missing")
    try:
        entry = pwd.getpwnam(NAME)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(NAME)
    home = Path(tempfile.mkdtemp(prefix="stranger-"))
    os.chown(home, entry.pw_uid, entry.pw_gid)
    return Stranger(NAME, entry.pw_uid, home)
