"""Test automation: `uv run nox` runs the default sessions (tests, lint, typecheck).

Every session installs the locked dependencies (`uv.lock`) into its own virtualenv with
`uv sync --frozen`, so what is tested is exactly what `uv run ganglion run` runs.

    uv run nox                 tests + lint + typecheck + browser + e2e
    uv run nox -s e2e          Matrix against a real Synapse (in its own virtualenv)
    uv run nox -s bench        benchmarks, JSON report in .bench/report.json
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck", "browser", "e2e"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def _sync(session: nox.Session, *groups: str) -> None:
    args = ["uv", "sync", "--frozen", "--inexact"]
    for group in groups:
        args += ["--group", group]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The unit and integration suite (fake model server, real loopback processes)."""
    _ensure_bubblewrap(session)
    _sync(session, "dev")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint (including the ASYNC rules) and format check."""
    _sync(session, "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/ and actors/."""
    _sync(session, "dev")
    session.run("mypy", "--strict")


CHROMIUM = Path("/usr/bin/chromium")


def _can_apt_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_install(session: nox.Session, package: str) -> None:
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        package,
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def _ensure_chromium(session: nox.Session) -> None:
    """Debian's Chromium is what the browser tests drive (no browser download here)."""
    if CHROMIUM.exists():
        return
    if not _can_apt_install():
        session.error(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            "(sudo apt-get install chromium), then run `uv run nox -s browser` again"
        )
    _apt_install(session, "chromium")


def _ensure_bubblewrap(session: nox.Session) -> None:
    """The shell sandbox tests run bwrap for real; without it (and without root to
    install it) they are skipped, and say so."""
    if shutil.which("bwrap") is None and _can_apt_install():
        _apt_install(session, "bubblewrap")


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """The web chat in real headless Chromium, driven by Playwright."""
    _ensure_chromium(session)
    _sync(session, "dev", "browser")
    session.run("pytest", "tests/browser", *session.posargs)


SYNAPSE_VERSION = "1.163.2"


def _ensure_synapse(session: nox.Session) -> Path:
    """Synapse in a virtualenv of its own beside the session's, so that its dependency pins
    never mix with Ganglion's; kept between runs and reinstalled when the pin changes.
    Returns that virtualenv's python."""
    venv = Path(session.virtualenv.location) / "synapse"
    python = venv / "bin" / "python"
    installed = list(
        venv.glob(f"lib/python*/site-packages/matrix_synapse-{SYNAPSE_VERSION}.dist-info")
    )
    if installed:
        session.log(f"Synapse {SYNAPSE_VERSION} already installed in {venv}")
        return python
    started = time.monotonic()
    if not python.exists():
        session.run_install(
            "uv", "venv", "--quiet", "--clear", "--python", PYTHON, str(venv), external=True
        )
    session.run_install(
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        f"matrix-synapse=={SYNAPSE_VERSION}",
        external=True,
    )
    session.log(f"Synapse {SYNAPSE_VERSION} installed in {time.monotonic() - started:.1f} s")
    return python


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Matrix end to end: a real Synapse on loopback and real matrix-nio clients."""
    synapse_python = _ensure_synapse(session)
    _sync(session, "dev")
    session.run(
        "pytest",
        "tests/e2e",
        *session.posargs,
        env={"GANGLION_SYNAPSE_PYTHON": str(synapse_python)},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; writes one JSON report (.bench/report.json by default). The Matrix
    round trips run against a real Synapse, installed as for `e2e`."""
    synapse_python = _ensure_synapse(session)
    _sync(session, "dev")
    out = session.posargs[0] if session.posargs else ".bench/report.json"
    session.run(
        "python",
        "benchmarks/run.py",
        "--out",
        out,
        env={"GANGLION_SYNAPSE_PYTHON": str(synapse_python)},
    )
