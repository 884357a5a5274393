"""The `ganglion` command line.

    ganglion [run] [--config PATH]   run the daemon until SIGTERM/SIGINT
    ganglion init [DIR] [--systemd]  write config.yaml, the data directory, the token
    ganglion check [--json]          validate the config and probe every configured part
    ganglion status [--json]         what the running daemon is doing
    ganglion chat [-m TEXT]          talk to the running daemon from the terminal
    ganglion reminders list          list scheduled reminders (works while the daemon runs)
    ganglion reminders cancel ID     cancel one
    ganglion matrix trust @USER      pin a Matrix user's current identity (works while running)
    ganglion matrix reset-identity   a new cross-signing identity and recovery key for the bot

Exit status of `run`: 0 after a clean stop, 2 for a configuration that cannot be used
(one readable message, never a traceback), 1 when a failure escalated to the root of the
supervision tree (or the daemon crashed), 128+N when a second signal N forced an
immediate stop. `check` exits 1 when any probe failed; `status` and `chat` exit 3 when no
daemon answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ganglion.errors import StartupError

if TYPE_CHECKING:
    from ganglion.configfile import ClientView
    from ganglion.peercheck import LocalDaemon

__all__ = ["console", "main"]

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2
EXIT_NO_DAEMON = 3

log = logging.getLogger("ganglion")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganglion", description="Ganglion, a personal AI assistant daemon."
    )
    config_help = "YAML config file (default: ./config.yaml if present, else built-in defaults)"
    # `ganglion` alone runs the daemon, as the original's `uv run ganglion` did.
    parser.add_argument("--config", dest="main_config", type=Path, default=None, help=config_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon in the foreground (the default)")
    run.add_argument("--config", type=Path, default=None, help=config_help)
    init = commands.add_parser("init", help="set up a directory: config.yaml, data, token")
    init.add_argument("directory", nargs="?", type=Path, default=Path("."), metavar="DIR")
    init.add_argument("--systemd", action="store_true", help="also write ganglion.service")
    check = commands.add_parser("check", help="validate the config and probe each part")
    check.add_argument("--config", type=Path, default=None, help=config_help)
    check.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    status = commands.add_parser("status", help="ask the running daemon what it is doing")
    status.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    status.add_argument("--json", action="store_true", help="the daemon's answer as JSON")
    chat = commands.add_parser("chat", help="chat with the running daemon")
    chat.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    chat.add_argument("-m", "--message", help="send one message, print the reply, exit")
    reminders = commands.add_parser("reminders", help="list or cancel scheduled reminders")
    reminders.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    actions = reminders.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the active reminders")
    cancel = actions.add_parser("cancel", help="cancel a reminder")
    cancel.add_argument("reminder_id", metavar="ID")
    matrix = commands.add_parser("matrix", help="the Matrix identities the bot trusts, and its own")
    matrix.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    matrix_actions = matrix.add_subparsers(dest="action", required=True, metavar="ACTION")
    trust = matrix_actions.add_parser(
        "trust", help="trust a user's current cross-signing identity (after they reset it)"
    )
    trust.add_argument("user_id", metavar="@USER:SERVER")
    reset = matrix_actions.add_parser(
        "reset-identity", help="replace the bot's cross-signing identity and recovery key"
    )
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for action in (trust, reset):  # after the action too; SUPPRESS keeps one given before
        action.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    return parser


def console() -> NoReturn:
    """The `ganglion` console script and `python -m ganglion`: `main`, then leave at once.

    Everything that must reach the disk is written by then (the stores are closed and
    the log handlers flushed when `main` returns); what `os._exit` skips is the
    interpreter's teardown of every module and object, which took most of the time from
    SIGTERM to exit after a drain of a few milliseconds.
    """
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = getattr(args, "config", None) or args.main_config
    if args.command in (None, "run"):
        return _run(config)
    if args.command == "init":
        return _init(args.directory, systemd=args.systemd)
    if args.command == "check":
        return _check(config, as_json=args.json)
    if args.command == "status":
        return _status(config, as_json=args.json)
    if args.command == "chat":
        return _chat(config, args.message)
    if args.command == "reminders":
        return _reminders(config, args.action, getattr(args, "reminder_id", None))
    if args.command == "matrix":
        return _matrix(config, args)
    raise AssertionError(args.command)


def _run(config_path: Path | None) -> int:
    import trio

    from ganglion.app import ForcedStop
    from ganglion.config import ConfigError, load_config, require_an_interface
    from ganglion.logs import configure_logging
    from ganglion.ops.notify import Notifier, serve_notifying
    from ganglion.private import PRIVATE_UMASK, protect_process
    from ganglion_actors import Escalation

    # Before anything is created: the logs, the databases and the token are owner-only,
    # and commands run as the same user cannot read this process's environment.
    os.umask(PRIVATE_UMASK)
    protect_process()

    try:
        config, source = load_config(config_path)
        require_an_interface(config)
    except ConfigError as exc:
        print(f"ganglion: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    with configure_logging(
        config.logging.level, config.logging.dir, retention_days=config.logging.retention_days
    ):
        if source is None:
            log.info(
                "no config file given and no ./config.yaml: running on the built-in defaults "
                "(web chat on %s:%d, Matrix off, LLM at %s); see config.yaml.example",
                config.web.host,
                config.web.port,
                config.llm.base_url,
            )
        else:
            log.info("configuration read from %s", source)
        try:
            trio.run(serve_notifying, config, Notifier.from_environ())
        except ForcedStop as stop:
            log.warning("stopped at once by a second signal (%s)", stop.signal_name)
            return 128 + stop.signum
        except Escalation:
            log.critical("a failure escalated to the root of the supervision tree; exiting")
            return EXIT_CRASH
        except StartupError as exc:
            log.critical("cannot start: %s", exc)
            return EXIT_CONFIG
        except Exception:
            log.critical("the daemon crashed", exc_info=True)
            return EXIT_CRASH
    return EXIT_OK


def _init(directory: Path, *, systemd: bool) -> int:
    from ganglion.config import ConfigError
    from ganglion.ops.setup import init, next_steps
    from ganglion.private import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)
    try:
        report = init(directory, systemd=systemd)
    except ConfigError as exc:
        print(f"ganglion: the existing config.yaml cannot be used\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"ganglion: cannot set up {directory}: {exc}", file=sys.stderr)
        return EXIT_CRASH
    print(next_steps(report))
    return EXIT_OK


def _check(config_path: Path | None, *, as_json: bool) -> int:
    import trio

    from ganglion.config import ConfigError, load_config, require_an_interface
    from ganglion.ops.check import run_checks
    from ganglion.ops.findings import failed, render, render_json

    try:
        config, source = load_config(config_path)
        require_an_interface(config)
    except ConfigError as exc:
        if as_json:
            print(json.dumps({"ok": False, "config": str(exc), "checks": []}))
        else:
            print(f"[FAIL] configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.addHandler(logging.NullHandler())  # the checklist says it all; no stray log lines
    findings = trio.run(run_checks, config)
    if as_json:
        print(render_json(findings))
    else:
        print(f"[ok]   configuration: {source or 'built-in defaults'}")
        print(render(findings))
    return EXIT_CRASH if failed(findings) else EXIT_OK


def _client_view(config_path: Path | None) -> ClientView:
    """Where a client command finds the daemon: read plainly when the file allows it
    (no pydantic: the command starts in a fraction of a second), else validated."""
    from ganglion.configfile import plain_client_view

    view = plain_client_view(config_path, os.environ)
    if view is not None:
        return view
    from ganglion.config import client_view

    return client_view(config_path)


def _daemon_target(config_path: Path | None) -> LocalDaemon | int:
    """Where the running daemon listens, its token and whose socket may receive it;
    else the exit status."""
    from ganglion.configfile import ConfigError
    from ganglion.datadir import WEB_TOKEN_FILE
    from ganglion.peercheck import LocalDaemon, owner_uids
    from ganglion.web.auth import read_token

    try:
        view = _client_view(config_path)
    except ConfigError as exc:
        print(f"ganglion: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    token = view.web_token if view.web_token is not None else read_token(view.data_dir)
    if token is None:
        print(
            f"ganglion: no web token found (GANGLION_WEB_TOKEN, web.token, or "
            f"{view.data_dir / WEB_TOKEN_FILE}); has `ganglion run` been started here?",
            file=sys.stderr,
        )
        return EXIT_NO_DAEMON
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(view.web_host, view.web_host)
    host = f"[{host}]" if ":" in host else host
    return LocalDaemon(host, view.web_port, token, owner_uids(view.data_dir))


def _chat(config_path: Path | None, message: str | None) -> int:
    import trio

    from ganglion.terminal import ChatError, chat_interactive, chat_once, chat_piped

    target = _daemon_target(config_path)
    if isinstance(target, int):
        return target
    try:
        if message is not None:
            return trio.run(chat_once, target, message)
        if not sys.stdin.isatty():  # a pipe or a file, as scripts and cron jobs feed it
            return trio.run(chat_piped, target)
        return trio.run(chat_interactive, target)
    except ChatError as exc:
        print(f"ganglion: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 0


def _status(config_path: Path | None, *, as_json: bool) -> int:
    import http.client

    from ganglion.ops.statustext import render
    from ganglion.peercheck import PeerError, connect_checked

    target = _daemon_target(config_path)
    if isinstance(target, int):
        return target
    connection = http.client.HTTPConnection(target.origin, timeout=10)
    try:
        # The token goes only over a connection checked to end at the owner's daemon.
        connection.sock = connect_checked(target, timeout=10)
        connection.request(
            "GET", "/api/status", headers={"Authorization": f"Bearer {target.token}"}
        )
        reply = connection.getresponse()
        status, body = reply.status, reply.read().decode("utf-8", "replace")
    except PeerError as exc:
        print(f"ganglion: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except (OSError, http.client.HTTPException) as exc:
        print(
            f"ganglion: no daemon is running at http://{target.origin} ({type(exc).__name__}); "
            "start it with `ganglion run`",
            file=sys.stderr,
        )
        return EXIT_NO_DAEMON
    finally:
        connection.close()
    if status != 200:
        print(f"ganglion: the daemon answered HTTP {status}: {body.strip()}", file=sys.stderr)
        return EXIT_NO_DAEMON
    snapshot = json.loads(body)
    print(json.dumps(snapshot, indent=2) if as_json else render(snapshot))
    return EXIT_OK


def _reminders(config_path: Path | None, action: str, reminder_id: str | None) -> int:
    import trio

    from ganglion.configfile import ConfigError
    from ganglion.datadir import SCHEDULER_DB
    from ganglion.reminders.cli import cancel_reminder, list_reminders
    from ganglion.store import StoreError

    try:
        view = _client_view(config_path)
    except ConfigError as exc:
        print(f"ganglion: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    path = view.data_dir / SCHEDULER_DB
    if not path.exists():
        print(f"No reminders: {path} does not exist yet.")
        return EXIT_OK
    try:
        if action == "list":
            print(trio.run(list_reminders, path))
            return EXIT_OK
        assert reminder_id is not None
        if trio.run(cancel_reminder, path, reminder_id):
            print(f"Cancelled reminder {reminder_id}.")
            return EXIT_OK
        print(f"ganglion: no active reminder with id {reminder_id!r}", file=sys.stderr)
        return EXIT_CRASH
    except StoreError as exc:
        print(f"ganglion: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _matrix(config_path: Path | None, args: argparse.Namespace) -> int:
    import getpass

    import trio

    from ganglion.config import ConfigError, load_config
    from ganglion.ops.matrixadmin import RESET_WARNING, AdminError, reset_identity, trust_user

    try:
        config, _ = load_config(config_path)
    except ConfigError as exc:
        print(f"ganglion: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not config.matrix.enabled:
        print("ganglion: Matrix is not configured (no matrix section)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.action == "trust":
            pinned = trio.run(trust_user, config, args.user_id)
            was = f" (it replaces {pinned.previous})" if pinned.previous else ""
            devices = ", ".join(pinned.signed_devices) or "none yet"
            print(
                f"Trusted {pinned.user_id}'s identity, master key {pinned.master_key}{was}.\n"
                f"Devices it has signed, which the bot now answers: {devices}."
            )
            return EXIT_OK
        print(RESET_WARNING.format(bot=config.matrix.user_id))
        if not args.yes:
            if not sys.stdin.isatty():
                print("ganglion: not on a terminal: add --yes to go ahead", file=sys.stderr)
                return EXIT_CRASH
            if input("Reset the bot's identity? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Nothing changed.")
                return EXIT_OK

        def ask_password() -> str | None:
            if not sys.stdin.isatty():
                return None
            return getpass.getpass(f"Password of {config.matrix.user_id} (the server asks): ")

        master = trio.run(reset_identity, config, ask_password)
    except AdminError as exc:
        print(f"ganglion: {exc}", file=sys.stderr)
        return EXIT_CRASH
    print(f"The bot's new identity is published (master key {master}); its device is signed.")
    return EXIT_OK
