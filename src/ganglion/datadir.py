"""The data directory: shipped instructions plus the files the assistant edits itself.

`ensure_data_dir` creates what is missing from the packaged templates and never touches a
file that exists: the owner's edits and the assistant's memories always win. Everything
beneath the data directory is created through `ganglion.safefs`, so a link planted there
is never written through. Which of these files are Ganglion's own, out of every tool's
reach, is `ganglion.owned`'s to say.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ganglion import safefs

__all__ = [
    "APPROVALS_FILE",
    "BASE_PROMPT_FILE",
    "CONVERSATION_DB",
    "GOALS_FILE",
    "MATRIX_PICKLE_KEY_FILE",
    "MATRIX_RECOVERY_KEY_FILE",
    "MATRIX_STORE_DIR",
    "MEMORIES_ARCHIVE_FILE",
    "MEMORIES_FILE",
    "REMINDERS_MIRROR",
    "SCHEDULER_DB",
    "SCRIPTS_DIR",
    "SKILLS_DIR",
    "TEMPLATE_FILES",
    "WEB_TOKEN_FILE",
    "ensure_data_dir",
]

BASE_PROMPT_FILE = "BASE_PROMPT.txt"
MEMORIES_FILE = "MEMORIES.txt"
GOALS_FILE = "HEARTBEATS.txt"
MEMORIES_ARCHIVE_FILE = "MEMORIES.archive.txt"
SKILLS_DIR = "skills"
SCRIPTS_DIR = "scripts"
TEMPLATE_FILES = (BASE_PROMPT_FILE, MEMORIES_FILE, GOALS_FILE)
DIRECTORIES = (SKILLS_DIR, SCRIPTS_DIR)
WEB_TOKEN_FILE = "web_token"
CONVERSATION_DB = "conversation.db"
SCHEDULER_DB = "scheduler.db"
REMINDERS_MIRROR = "reminders.json"
# The rules the owner added by answering "always" to a question (`approval.added`).
APPROVALS_FILE = "approvals.yaml"
MATRIX_PICKLE_KEY_FILE = "matrix_pickle_key"
# Where the recovery key of a new cross-signing identity is handed out when there is no
# terminal to show it on (under systemd); the owner moves it somewhere safe.
MATRIX_RECOVERY_KEY_FILE = "matrix_recovery_key"
MATRIX_STORE_DIR = "matrix"


def ensure_data_dir(data_dir: Path) -> list[Path]:
    """Create `data_dir` and whatever of its layout is missing; return what was created.

    Error handling: an `OSError` (permissions, a file where a directory should be) is
    raised to the caller, which reports it and exits; nothing is overwritten. A link in
    place of a directory or a file is left alone (the tools refuse it when they meet it).
    """
    created: list[Path] = []
    if not data_dir.is_dir():
        data_dir.mkdir(parents=True)
        created.append(data_dir)
    templates = resources.files("ganglion") / "templates"
    try:
        with safefs.open_dir(data_dir) as directory:
            for name in DIRECTORIES:
                try:
                    if directory.mkdir(name):
                        created.append(data_dir / name)
                except safefs.LinkRefused:
                    continue
            for name in TEMPLATE_FILES:
                text = (templates / name).read_text(encoding="utf-8")
                if _create(directory, name, text.encode("utf-8")):
                    created.append(data_dir / name)
    except safefs.SafePathError as exc:
        raise OSError(str(exc)) from None
    return created


def _create(directory: safefs.SafeDir, name: str, data: bytes) -> bool:
    """Create the file `name` with `data` unless anything (a link too) has that name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=directory.fd)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return True
