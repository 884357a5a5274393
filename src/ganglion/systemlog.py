"""Where the autonomous threads deliver (system reminders, the global heartbeat): the log.

No person reads a system thread live, so its replies, failures and notices become log
lines for the owner to read later, and its replies are marked delivered once logged. The
tree runs it as the "system" interface (`system_log_child`).
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from ganglion.backend import InterfaceBackend, interface_child
from ganglion.delivery import DeliveryRouter
from ganglion.messages import FinalReply, Notice, Outbound, TurnFailed
from ganglion_actors import ChildSpec, Inbox

__all__ = ["serve_system_log", "system_log_child"]

log = logging.getLogger("ganglion")


def system_log_child(backend: InterfaceBackend, router: DeliveryRouter) -> ChildSpec[Outbound]:
    """The system log as the root supervisor runs it: an interface (`interface_child`)
    that owns the `system:` threads."""
    return interface_child("system", partial(serve_system_log, backend), router)


async def serve_system_log(
    backend: InterfaceBackend,
    inbox: Inbox[Outbound],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Log what the system threads say until the mailbox ends."""
    task_status.started()
    async for event in inbox:
        match event:
            case FinalReply(thread_id=thread_id, text=text, outbox_id=outbox_id):
                log.info("%s says: %s", thread_id, text)
                if outbox_id is not None:
                    await backend.mark_delivered([outbox_id])
            case TurnFailed(thread_id=thread_id, message=message):
                log.warning("%s turn failed: %s", thread_id, message)
            case Notice(thread_id=thread_id, text=text):
                log.info("%s notice: %s", thread_id, text)
            case _:
                pass
