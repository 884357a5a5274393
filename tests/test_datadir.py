from __future__ import annotations

from pathlib import Path

from ganglion.datadir import TEMPLATE_FILES, ensure_data_dir

REPO = Path(__file__).parents[1]


def test_creates_the_layout_from_the_templates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = ensure_data_dir(data)
    for name in (*TEMPLATE_FILES, "skills", "scripts"):
        assert data / name in created
    assert (data / "BASE_PROMPT.txt").read_text() == (REPO / "data" / "BASE_PROMPT.txt").read_text()


def test_never_overwrites_what_exists(tmp_path: Path) -> None:
    (tmp_path / "MEMORIES.txt").write_text("- the owner likes tea\n")
    (tmp_path / "BASE_PROMPT.txt").write_text("my own instructions\n")
    created = ensure_data_dir(tmp_path)
    assert tmp_path / "MEMORIES.txt" not in created
    assert (tmp_path / "MEMORIES.txt").read_text() == "- the owner likes tea\n"
    assert (tmp_path / "BASE_PROMPT.txt").read_text() == "my own instructions\n"
    assert ensure_data_dir(tmp_path) == []
