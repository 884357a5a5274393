"""Test automation: `uv run nox` runs the default sessions (tests, lint, typecheck).

Every session installs the locked dependencies (`uv.lock`) into its own virtualenv with
`uv sync --frozen`, so what is tested is exactly what `uv run ganglion run` runs.

    uv run nox                 tests + lint + typecheck
    uv run nox -s bench        benchmarks, JSON report in .bench/report.json
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck"]
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


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; writes one JSON report (.bench/report.json by default)."""
    _sync(session, "dev")
    out = session.posargs[0] if session.posargs else ".bench/report.json"
    session.run("python", "benchmarks/run.py", "--out", out)
