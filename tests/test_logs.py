from __future__ import annotations

import logging
from pathlib import Path

from ganglion.logs import configure_logging


def test_logs_go_to_a_daily_file_with_the_actor_name(tmp_path: Path) -> None:
    with configure_logging("INFO", tmp_path / "logs", retention_days=3):
        logging.getLogger("ganglion.test").info("hello %s", "world")
        logging.getLogger("ganglion.test").debug("not at INFO")
    text = (tmp_path / "logs" / "ganglion.log").read_text()
    assert "[main] ganglion.test: hello world" in text
    assert "not at INFO" not in text
