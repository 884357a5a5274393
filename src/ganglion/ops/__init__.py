"""Operating Ganglion: the commands an owner runs around the daemon, and what the daemon
tells its process supervisor and its monitoring.

What the daemon runs (floor 8 of `tests/test_imports.py`; `loop` and `statustext` are
pure and sit on the ground floor):

- `status`: what the running daemon is doing (`DaemonView`, the `/status` snapshot);
- `metrics`: Prometheus metrics (`/metrics`, and `web.metrics_bind`);
- `endpoints`: the authenticated HTTP routes, registered on the web chat's app;
- `loop`: the event loop's step times (a trio instrument), and their percentiles;

What the command line runs, above the daemon (floor 10):

- `setup`: `ganglion init` (a commented config, the data directory, the token, a unit);
- `check`: `ganglion check` (probe every configured part, one line each), with
  `matrixcheck` for the Matrix part;
- `notify`: the sd_notify protocol (READY=1, STOPPING=1, WATCHDOG=1, STATUS=) around
  `run_daemon`;
- `statustext`: `ganglion status` rendered from the snapshot (pure; httpx only);
- `reference`: the README's configuration reference, generated from the models.

Nothing is imported here.
"""
