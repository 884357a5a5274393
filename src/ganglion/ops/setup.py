"""`ganglion init [DIR]`: everything a first run needs, and nothing overwritten.

Writes `DIR/config.yaml` (the commented configuration shipped as package data, the same
text as `config.yaml.example`), creates the data directory it names with its files,
generates the web token, and with `systemd=True` writes `DIR/ganglion.service` (the unit
shipped as package data, filled in for this directory). A file that exists is kept as it
is, and said so. Prints the next steps.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

from ganglion.config import DEFAULT_CONFIG_NAME, Config, load_config
from ganglion.datadir import ensure_data_dir
from ganglion.web.auth import load_or_create_token

__all__ = ["UNIT_NAME", "InitReport", "config_template", "init", "next_steps", "unit_text"]

UNIT_NAME = "ganglion.service"
# systemd's stop timeout is the grace period plus this much: the drain gets its whole
# grace, then the cancellation and the stores' closing get time too.
STOP_MARGIN_SECONDS = 20


@dataclass
class InitReport:
    """What `init` did: `created` and `kept` paths, the config it wrote or found, and the
    URL that opens the web chat."""

    config: Config
    config_path: Path
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    unit_path: Path | None = None
    url: str = ""


def config_template() -> str:
    """The commented configuration shipped with the package (`config.yaml.example`)."""
    return (resources.files("ganglion") / "templates" / "config.yaml").read_text("utf-8")


def init(directory: Path, *, systemd: bool = False) -> InitReport:
    """Prepare `directory` for `ganglion run`; see the module docstring.

    Error handling: `ConfigError` when an existing config.yaml cannot be used; `OSError`
    when a file or directory cannot be written.
    """
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / DEFAULT_CONFIG_NAME
    wrote = _create(config_path, config_template())
    config, _ = load_config(config_path)
    report = InitReport(config, config_path)
    (report.created if wrote else report.kept).append(config_path)
    report.created += ensure_data_dir(config.data_dir)
    if config.logging.dir is not None and not config.logging.dir.exists():
        config.logging.dir.mkdir(parents=True)
        report.created.append(config.logging.dir)
    token = load_or_create_token(config.data_dir, config.web.token)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.web.host, config.web.host)
    host = f"[{host}]" if ":" in host else host
    report.url = f"http://{host}:{config.web.port}/#token={token}"
    if systemd:
        report.unit_path = directory / UNIT_NAME
        written = _create(report.unit_path, unit_text(config, config_path))
        (report.created if written else report.kept).append(report.unit_path)
    return report


def unit_text(config: Config, config_path: Path) -> str:
    """The systemd unit for running `config_path`, from the packaged template."""
    template = (resources.files("ganglion") / "templates" / UNIT_NAME).read_text("utf-8")
    writable = [config_path.parent, config.data_dir]
    if config.logging.dir is not None:
        writable.append(config.logging.dir)
    shell = config.tools.shell
    writable += [p for p in (shell.cwd, *shell.writable_paths) if p is not None]
    unique = dict.fromkeys(str(path) for path in writable)
    return Template(template).substitute(
        unit_path=config_path.parent / UNIT_NAME,
        exec_start=f"{_executable()} run --config {config_path}",
        directory=config_path.parent,
        grace=f"{config.shutdown.grace_seconds:g}",
        stop_seconds=int(config.shutdown.grace_seconds) + STOP_MARGIN_SECONDS,
        writable=" ".join(unique),
    )


def next_steps(report: InitReport) -> str:
    """What to do after `init`, for the terminal."""
    config = report.config
    lines = [f"created {path}" for path in report.created]
    lines += [f"kept    {path} (it exists; not overwritten)" for path in report.kept]
    option = f" --config {report.config_path}"
    lines += [
        "",
        "Next steps:",
        f"  1. Edit {report.config_path}: llm.base_url and llm.model point at your model",
        f"     server (now {config.llm.base_url}, model {config.llm.model}).",
        f"  2. ganglion check{option}",
        f"  3. ganglion run{option}",
        f"  4. Open the web chat: {report.url}",
    ]
    if report.unit_path is not None:
        lines += [
            "  Or run it under systemd:",
            f"     systemctl --user link {report.unit_path}",
            "     systemctl --user enable --now ganglion",
        ]
    return "\n".join(lines)


def _create(path: Path, text: str) -> bool:
    """Write `text` to a new file `path`; False (and nothing written) when it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return True


def _executable() -> str:
    """How systemd should start this installation's `ganglion`: with this Python (the
    virtualenv's, when it runs in one)."""
    return f"{sys.executable} -m ganglion"
