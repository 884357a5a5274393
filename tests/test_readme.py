"""The README's configuration reference is generated, and kept in step by this test."""

from __future__ import annotations

from pathlib import Path

from ganglion.config import Config
from ganglion.ops.reference import options, reference_markdown

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_holds_the_current_configuration_reference() -> None:
    assert reference_markdown() in README.read_text(encoding="utf-8"), (
        "the configuration changed: run `uv run python -m ganglion.ops.reference README.md`"
    )


def test_the_reference_lists_every_option_with_its_default() -> None:
    paths = {option.path: option for option in options()}
    assert paths["llm.timeouts.first_token"].default == "120.0"
    assert paths["web.port"].type == "integer, ≥ 0, ≤ 65535"
    assert paths["tools.shell.sandbox"].type == "`none` or `bwrap`"
    assert paths["tools.mcp.servers.<name>.url"].type == "text or null"
    assert paths["llm.fallbacks[].model"].description.startswith("As `llm.model`")
    assert set(Config.model_fields) <= {path.split(".")[0] for path in paths}
    assert 'Sent as "Authorization: Bearer' in paths["llm.api_key"].description
