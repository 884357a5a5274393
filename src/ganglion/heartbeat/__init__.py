"""The heartbeat actor: reviews the open goals in HEARTBEATS.txt on a timer."""

from ganglion.heartbeat.actor import HEARTBEAT_THREAD, run_heartbeat

__all__ = ["HEARTBEAT_THREAD", "run_heartbeat"]
