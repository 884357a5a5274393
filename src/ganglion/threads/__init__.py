"""Conversation threads: one actor per thread id."""

from ganglion.threads.actor import ThreadActor, serve_thread
from ganglion.threads.deps import Peers, SharedPromptFiles, ThreadDeps

__all__ = ["Peers", "SharedPromptFiles", "ThreadActor", "ThreadDeps", "serve_thread"]
