"""`nox -s bench` is not run by the test command: what its benchmarks read from the test
suite must still be where they look for it (a moved helper broke a bench run once)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_file_a_benchmark_names_exists() -> None:
    named = {
        match.group(1)
        for source in (ROOT / "benchmarks").glob("*.py")
        for match in re.finditer(r'"tests" / "support" / "([^"]+)"', source.read_text())
    }
    assert named  # the pattern still finds them
    assert {name for name in named if not (ROOT / "tests" / "support" / name).is_file()} == set()
