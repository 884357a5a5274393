"""The web chat's vendored libraries are the ones their READMEs name: each file's sha256
is written in its README, beside the version, and its licence is there."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

VENDOR = Path(__file__).parents[1] / "src/ganglion/web/static/vendor"
LIBRARIES = {
    "markdown-it": ("markdown-it.js", "markdown-it"),
    "mdit-tex": ("tex.js", "@mdit/plugin-tex"),
    "mdit-tasklist": ("tasklist.js", "@mdit/plugin-tasklist"),
    "katex": ("katex.js", "KaTeX"),
    "highlight.js": ("highlight.js", "highlight.js"),
    "dompurify": ("purify.es.js", "DOMPurify"),
}


def test_every_vendored_library_is_listed() -> None:
    assert {path.name for path in VENDOR.iterdir()} == set(LIBRARIES)


@pytest.mark.parametrize("directory", sorted(LIBRARIES))
def test_a_vendored_library_is_the_one_its_readme_names(directory: str) -> None:
    script, name = LIBRARIES[directory]
    readme = (VENDOR / directory / "README.md").read_text(encoding="utf-8")
    assert re.match(rf"# {re.escape(name)} \d+\.\d+\.\d+ \(vendored\)\n", readme)
    digest = hashlib.sha256((VENDOR / directory / script).read_bytes()).hexdigest()
    assert f"sha256: `{digest}`" in readme
    assert {path.name for path in (VENDOR / directory).iterdir()} == {
        script,
        "LICENSE",
        "README.md",
    }


@pytest.mark.parametrize("directory", ["markdown-it", "katex", "highlight.js"])
def test_a_vendored_bundle_names_its_version_at_its_top(directory: str) -> None:
    script, name = LIBRARIES[directory]
    readme = (VENDOR / directory / "README.md").read_text(encoding="utf-8")
    version = readme.split("\n", 1)[0].split()[-2]
    assert f"{name} {version} ".encode() in (VENDOR / directory / script).read_bytes()[:200]
