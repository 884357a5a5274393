"""Logging: stderr for the process supervisor's journal, daily rotating files under `logs/`.

Records are handed to a queue and written by a listener thread, so a slow disk never stalls
the event loop. Every line names the actor it comes from (`[threads/web_ab12]`), read from
the runtime's context variable, so one conversation can be followed through the log.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganglion_actors import current_actor_name

__all__ = ["ActorNameFilter", "configure_logging"]

FORMAT = "%(asctime)s %(levelname)-7s [%(actor)s] %(name)s: %(message)s"


class ActorNameFilter(logging.Filter):
    """Adds `record.actor`: the running actor's name, or `main` outside any actor."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "actor"):
            record.actor = current_actor_name() or "main"
        return True


@contextmanager
def configure_logging(
    level: str, log_dir: Path | None, *, retention_days: int = 14
) -> Iterator[None]:
    """Route all logging to stderr and, if `log_dir` is set, to `log_dir/ganglion.log`
    rotated at midnight keeping `retention_days` files.

    Resource handling: the listener thread is stopped (and pending records flushed) when
    the context exits.
    """
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.TimedRotatingFileHandler(
                log_dir / "ganglion.log",
                when="midnight",
                backupCount=retention_days,
                encoding="utf-8",
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    # The actor name must be read in the task that logs, before the record crosses threads.
    queue_handler.addFilter(ActorNameFilter())
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    root.handlers[:] = [queue_handler]
    root.setLevel(level)
    for noisy in ("hypercorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    listener.start()
    try:
        yield
    finally:
        listener.stop()
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
