"""The data directory: shipped instructions plus the files the assistant edits itself.

`ensure_data_dir` creates what is missing from the packaged templates and never touches a
file that exists: the owner's edits and the assistant's memories always win.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["TEMPLATE_FILES", "WEB_TOKEN_FILE", "ensure_data_dir", "is_private_file"]

TEMPLATE_FILES = ("BASE_PROMPT.txt", "MEMORIES.txt", "HEARTBEATS.txt")
DIRECTORIES = ("skills", "scripts")
WEB_TOKEN_FILE = "web_token"
# The databases hold every thread's history; the token opens the web chat.
_PRIVATE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


def is_private_file(data_dir: Path, path: Path) -> bool:
    """Whether `path` (resolved) is one of the daemon's own files in `data_dir` that no
    tool may read or write: the web token and the databases."""
    if path.parent != data_dir:
        return False
    return path.name == WEB_TOKEN_FILE or path.name.endswith(_PRIVATE_SUFFIXES)


def ensure_data_dir(data_dir: Path) -> list[Path]:
    """Create `data_dir` and whatever of its layout is missing; return what was created.

    Error handling: an `OSError` (permissions, a file where a directory should be) is
    raised to the caller, which reports it and exits; nothing is overwritten.
    """
    created: list[Path] = []
    if not data_dir.is_dir():
        data_dir.mkdir(parents=True)
        created.append(data_dir)
    for name in DIRECTORIES:
        path = data_dir / name
        if not path.is_dir():
            path.mkdir()
            created.append(path)
    templates = resources.files("ganglion") / "templates"
    for name in TEMPLATE_FILES:
        path = data_dir / name
        try:
            # "x" mode: creation fails if the file appeared meanwhile; it is never replaced.
            with path.open("x", encoding="utf-8") as out:
                out.write((templates / name).read_text(encoding="utf-8"))
        except FileExistsError:
            continue
        created.append(path)
    return created
