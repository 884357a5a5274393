"""ganglion-actors: a small generic actor runtime for Trio.

- `ActorRef` / `Inbox`: a bounded mailbox written through references and read by the
  actor; `ask` for request/reply that never hangs on a dead actor.
- `open_supervisor` / `Supervisor`: OTP-style supervision (permanent, transient,
  temporary; restart intensity with escalation; jittered backoff; ordered start-up with
  `nursery.start`; reverse-order graceful shutdown).
- `Registry`: dynamic children keyed by id, spawned on the first message, passivated when
  idle.

Depends on trio only.
"""

from ganglion_actors._backoff import Backoff
from ganglion_actors._errors import ActorDied, ActorError, ActorStopped, Escalation, MailboxFull
from ganglion_actors._mailbox import (
    ActorRef,
    ActorStatistics,
    Inbox,
    Reply,
    current_actor_name,
    reserve,
)
from ganglion_actors._registry import Registry, RegistryStatistics
from ganglion_actors._supervisor import (
    ActorFn,
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorStatistics,
    open_supervisor,
    unwrap_group,
)

__all__ = [
    "ActorDied",
    "ActorError",
    "ActorFn",
    "ActorRef",
    "ActorStatistics",
    "ActorStopped",
    "Backoff",
    "ChildSpec",
    "Escalation",
    "Inbox",
    "MailboxFull",
    "Registry",
    "RegistryStatistics",
    "Reply",
    "Restart",
    "Supervisor",
    "SupervisorStatistics",
    "current_actor_name",
    "open_supervisor",
    "reserve",
    "unwrap_group",
]
