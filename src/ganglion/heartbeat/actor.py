"""The heartbeat actor.

Every `heartbeat.interval_seconds` (and on `/heartbeat`) it reads `HEARTBEATS.txt`; when the
file lists active goals it sends a `HeartbeatReview` turn to the system heartbeat thread,
where the model reviews them with its tools and stays quiet when there is nothing to say.
With no active goals nothing is sent: no model call, no noise. The timer is a deadline on
the mailbox receive, so the actor sleeps until it is due or asked, never polling.

The tree runs it with `heartbeat_child`, on the reference the threads already hold (the
`/heartbeat` command asks it), sending each review through the thread registry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from ganglion.config import HeartbeatConfig
from ganglion.datadir import GOALS_FILE
from ganglion.entries import active_lines
from ganglion.messages import HeartbeatReview, Inbound, TriggerHeartbeat
from ganglion.safefs import NotFound, SafePathError, open_dir
from ganglion_actors import ActorRef, ChildSpec, Inbox, Registry

__all__ = ["HEARTBEAT_THREAD", "heartbeat_child", "serve_heartbeat"]

log = logging.getLogger(__name__)

HEARTBEAT_THREAD = "system:heartbeat"
# The review reads at most this much of HEARTBEATS.txt (the prompt cuts goals further).
MAX_GOALS_BYTES = 64 * 1024

SendReview = Callable[[HeartbeatReview], Awaitable[None]]


def heartbeat_child(
    config: HeartbeatConfig,
    data_dir: Path,
    threads: Registry[str, Inbound],
    *,
    ref: ActorRef[TriggerHeartbeat],
) -> ChildSpec[TriggerHeartbeat]:
    """The heartbeat as the root supervisor runs it: started on `ref` (reserved before
    the tree starts), reviewing `data_dir`'s HEARTBEATS.txt and sending each review to
    its thread through `threads`. Permanent, and its crashes count toward the root's
    restart intensity."""

    async def send_review(review: HeartbeatReview) -> None:
        await threads.send(review.thread_id, review)

    return ChildSpec(
        "heartbeat",
        partial(serve_heartbeat, config, data_dir / GOALS_FILE, send_review),
        ref=ref,
    )


async def serve_heartbeat(
    config: HeartbeatConfig,
    heartbeats_file: Path,
    send_review: SendReview,
    inbox: Inbox[TriggerHeartbeat],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    due = _next_due(config)
    while True:
        request: TriggerHeartbeat | None = None
        with trio.move_on_at(due):
            try:
                request = await inbox.receive()
            except trio.EndOfChannel:
                return
        if request is None:
            await _review(heartbeats_file, send_review)
            due = _next_due(config)
            continue
        outcome = await _review(heartbeats_file, send_review)
        if request.reply is not None:
            request.reply.send(outcome)


def _next_due(config: HeartbeatConfig) -> float:
    """When the timer fires next; never when the timer is disabled (`/heartbeat` still works)."""
    return trio.current_time() + config.interval_seconds if config.enabled else math.inf


def _read_goals(heartbeats_file: Path) -> str:
    # Through the data directory's handle: a HEARTBEATS.txt planted as a link (to
    # /proc/self/environ, say) would otherwise be sent to the model as goals.
    try:
        with open_dir(heartbeats_file.parent) as directory:
            data, _ = directory.read_bytes(heartbeats_file.name, limit=MAX_GOALS_BYTES)
    except NotFound:
        return ""
    except SafePathError as exc:
        log.warning("heartbeat: %s is not read: %s", heartbeats_file.name, exc)
        return ""
    return data.decode("utf-8", errors="replace")


async def _review(heartbeats_file: Path, send_review: SendReview) -> str:
    text = await trio.to_thread.run_sync(_read_goals, heartbeats_file)
    goals = active_lines(text)
    if not goals:
        log.debug("heartbeat: no active goals, nothing to review")
        return "No active goals in HEARTBEATS.txt: nothing to review."
    await send_review(HeartbeatReview(HEARTBEAT_THREAD, goals))
    log.info("heartbeat: review of %d goal line(s) sent", goals.count("\n") + 1)
    return "Heartbeat review started: the results appear in the system thread log."
