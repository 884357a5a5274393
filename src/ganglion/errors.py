"""Ganglion's own errors; foreign errors are converted into these at the edges.

GanglionError
└── StartupError     the daemon cannot start as configured (bad data dir, corrupt
                     database, missing sandbox, …); reported in one line, exit 2
"""

from __future__ import annotations

__all__ = ["GanglionError", "StartupError"]


class GanglionError(Exception):
    """Base of Ganglion's own errors."""


class StartupError(GanglionError):
    """The daemon cannot start as configured; the message says what to fix."""
