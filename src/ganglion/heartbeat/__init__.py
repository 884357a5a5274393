"""The heartbeat: reviews fanned out to the active conversations on a schedule.

- `actor`: the heartbeat actor (`heartbeat_child`, `serve_heartbeat`).

What a review asks and how its answer is read, the beat arithmetic and `ActiveHours` are
pure and live on the ground floor (`ganglion.beats`), where the configuration and the
thread actors use them without this package. The reviews themselves run in the threads
(`ganglion.threads.review`).
"""
