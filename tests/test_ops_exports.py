"""The operator modules' public surface: what `__all__` lists exists, and nothing else
public is left out."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "check",
    "endpoints",
    "loop",
    "matrixcheck",
    "metrics",
    "notify",
    "reference",
    "setup",
    "status",
    "statustext",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_the_public_names(name: str) -> None:
    module = importlib.import_module(f"ganglion.ops.{name}")
    assert all(hasattr(module, export) for export in module.__all__)
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    }
    assert defined <= set(module.__all__), defined - set(module.__all__)
