"""What Ganglion owns: the files that no tool may read, list into, write or delete, and
that a sandboxed command never sees, wherever the file-tool roots and the sandbox's paths
are. This module is their one definition; the file tools refuse them by path, the
bubblewrap sandbox covers them with empty mounts.

Ganglion owns:

1. in the data directory, its databases (`conversation.db`, `scheduler.db`, any other
   `*.db`, with their `-wal`, `-shm` and `-journal` files), the reminders mirror
   (`reminders.json`: every conversation's reminders, though each conversation may only
   see its own), the rules the owner added to the approval policy (`approvals.yaml`: a
   model that could write it would approve itself), the web token and the Matrix pickle
   key, and the temporaries an atomic
   write of any of them leaves for a moment (`safefs.replaced_name`);
2. the Matrix store directory and everything in it: `<data_dir>/matrix`, and
   `matrix.store_dir` when that is set elsewhere (the encryption keys);
3. the logs directory (`logging.dir`) and everything in it: the log holds every
   conversation's tool arguments;
4. the config file the daemon was started with (secrets, MCP commands).

Every path is compared resolved (`os.path.realpath`), as `load_config` resolves the
configured ones: against the config file's directory, or the current directory when
there is no file. A path the tools are given is compared as it was resolved beneath its
root, where no link is ever followed, so a link cannot make an owned file look like
another one.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ganglion.datadir import (
    APPROVALS_FILE,
    MATRIX_PICKLE_KEY_FILE,
    MATRIX_RECOVERY_KEY_FILE,
    MATRIX_STORE_DIR,
    REMINDERS_MIRROR,
    WEB_TOKEN_FILE,
)
from ganglion.safefs import replaced_name

__all__ = ["PRIVATE_NAMES", "PRIVATE_SUFFIXES", "OwnedFiles", "data_dir_usage"]

PRIVATE_NAMES = (
    WEB_TOKEN_FILE,
    MATRIX_PICKLE_KEY_FILE,
    MATRIX_RECOVERY_KEY_FILE,
    REMINDERS_MIRROR,
    APPROVALS_FILE,
)
PRIVATE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _private_name(name: str) -> bool:
    name = replaced_name(name) or name
    return name in PRIVATE_NAMES or name.endswith(PRIVATE_SUFFIXES)


@dataclass(frozen=True, slots=True)
class OwnedFiles:
    """Ganglion's own files for one configuration (see the module docstring). Build it
    with `of`; `owns` answers for one path, `existing` lists what to hide."""

    data_dir: Path
    trees: tuple[Path, ...]  # owned with everything beneath them
    files: tuple[Path, ...]

    @classmethod
    def of(
        cls,
        data_dir: Path,
        *,
        config_file: Path | None = None,
        log_dir: Path | None = None,
        matrix_store_dir: Path | None = None,
    ) -> OwnedFiles:
        """What Ganglion owns with these paths (None: not configured). The default Matrix
        store stays owned when another is configured: it may hold an older device's keys."""
        data = _real(data_dir)
        trees = [data / MATRIX_STORE_DIR, matrix_store_dir, log_dir]
        return cls(
            data_dir=data,
            trees=tuple(dict.fromkeys(_real(tree) for tree in trees if tree is not None)),
            files=(_real(config_file),) if config_file is not None else (),
        )

    def owns(self, path: Path) -> bool:
        """Whether the absolute, resolved `path` is one of Ganglion's files, or lies in
        one of its directories."""
        if path in self.files or any(path.is_relative_to(tree) for tree in self.trees):
            return True
        return path.parent == self.data_dir and _private_name(path.name)

    def existing(self) -> list[Path]:
        """The owned paths that exist now, topmost only (for the sandbox to cover)."""
        found = [*self.trees, *self.files]
        try:
            with os.scandir(self.data_dir) as entries:
                found += [Path(entry.path) for entry in entries if _private_name(entry.name)]
        except (FileNotFoundError, NotADirectoryError):
            pass
        return [path for path in found if os.path.lexists(path)]


def data_dir_usage(owned: OwnedFiles) -> int:
    """The bytes (file sizes) of the regular files beneath the data directory, leaving out
    Ganglion's own: its databases and the Matrix store grow with the conversations, and
    the model's writes must be refused neither because they did nor for them.

    Blocking: walks the whole directory, call it from a worker thread. The walk holds
    each directory open (`os.fwalk`) and follows no link, so its paths are real ones and
    a link swapped in during it cannot send it elsewhere. Error handling: entries that
    vanish meanwhile are skipped; an unreadable directory is not counted.
    """
    total = 0
    for where, dirnames, filenames, dir_fd in os.fwalk(owned.data_dir, follow_symlinks=False):
        here = Path(where)
        dirnames[:] = [name for name in dirnames if not owned.owns(here / name)]
        for name in filenames:
            if not owned.owns(here / name):
                total += _size(dir_fd, name)
    return total


def _size(dir_fd: int, name: str) -> int:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0
