"""The heartbeat actor: reviews the open goals in HEARTBEATS.txt on a timer."""

from ganglion.heartbeat.actor import HEARTBEAT_THREAD, heartbeat_child, serve_heartbeat

__all__ = ["HEARTBEAT_THREAD", "heartbeat_child", "serve_heartbeat"]
