"""The heartbeat: reviews fanned out to the active conversations on a schedule.

- `actor`: the heartbeat actor (`heartbeat_child`, `serve_heartbeat`);
- `review`: what a review asks and how its answer is read (pure).

Import from the submodules; this package imports nothing, so the configuration can use
the pure `review` module without pulling in the actor.
"""
