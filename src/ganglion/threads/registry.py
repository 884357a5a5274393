"""The registry of thread actors, and waking the turns a stop cut off.

The registry (`ganglion_actors.Registry`) spawns a `ThreadActor` for a thread id on its
first message and passivates it when idle; the tree runs it as its first child
(`Registry.serve`), and everything that talks to a thread sends through it by thread id.
"""

from __future__ import annotations

from functools import partial

from ganglion.messages import Inbound, Wake
from ganglion.store import Turns
from ganglion.threads.actor import serve_thread
from ganglion.threads.deps import ThreadDeps
from ganglion_actors import ActorStopped, Registry

__all__ = ["resume_cut_off_turns", "thread_registry"]


def thread_registry(deps: ThreadDeps) -> Registry[str, Inbound]:
    """One `serve_thread` per thread id, sized and passivated as `threads` configures."""
    threads = deps.config.threads
    return Registry(
        "threads",
        lambda thread_id: partial(serve_thread, deps, thread_id),
        idle_timeout=threads.idle_seconds,
        mailbox_size=threads.mailbox_size,
    )


async def resume_cut_off_turns(threads: Registry[str, Inbound], turns: Turns) -> int:
    """Wake every thread that has a turn cut off by the last stop, so it is answered.

    Returns how many threads had such a turn. Error handling: stops early, quietly, when
    the registry is stopping (those turns are woken at the next start).
    """
    thread_ids = await turns.threads_with_pending_turns()
    for thread_id in thread_ids:
        try:
            await threads.send(thread_id, Wake(thread_id))
        except ActorStopped:
            break
    return len(thread_ids)
