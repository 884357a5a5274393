"""Operating Ganglion: the commands an owner runs around the daemon, and what the daemon
tells its process supervisor and its monitoring.

- `setup`: `ganglion init` (a commented config, the data directory, the token, a unit);
- `check`: `ganglion check` (probe every configured part, one line each);
- `notify`: the sd_notify protocol (READY=1, STOPPING=1, WATCHDOG=1, STATUS=);
- `status`: what the running daemon is doing (`ganglion status`, `/status`);
- `metrics`: Prometheus metrics (`/metrics`);
- `endpoints`: the two authenticated HTTP routes, registered on the web chat's app;
- `reference`: the README's configuration reference, generated from the models.
"""
