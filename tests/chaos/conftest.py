"""The chaos session (`uv run nox -s chaos`): a real daemon SIGKILLed again and again.

Not collected by the default `pytest` run (pyproject's `norecursedirs`): it takes minutes.
Run it with `uv run pytest tests/chaos -s` to see its counts.
"""

from __future__ import annotations
