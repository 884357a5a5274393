"""Run every benchmark and write one JSON report: `python benchmarks/run.py --out PATH`,
and the headline figures (issue 16 item 5) to `bench-report.json` at the repository root."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parent.parent))  # tests.support: the llama.cpp server

import bench_daemon
import bench_heartbeat
import bench_matrix
import bench_prompt
import bench_reminders
import bench_store
import bench_tools

BENCHMARKS = {
    "conversation_store": bench_store.main,
    "reminders": bench_reminders.main,
    "tools": bench_tools.main,
    "matrix": bench_matrix.main,
    "prompt": bench_prompt.main,
    "daemon": bench_daemon.main,
    "heartbeat": bench_heartbeat.main,
}
HEADLINE = Path(__file__).parent.parent / "bench-report.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".bench/report.json"))
    args = parser.parse_args()
    report = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": {},
    }
    for name, bench in BENCHMARKS.items():
        started = time.perf_counter()
        report["results"][name] = bench()
        print(f"{name}: done in {time.perf_counter() - started:.1f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))
    print(f"report written to {args.out}")
    HEADLINE.write_text(json.dumps(bench_daemon.headline(report["results"]), indent=2) + "\n")
    print(HEADLINE.read_text())
    print(f"headline figures written to {HEADLINE}")


if __name__ == "__main__":
    main()
