"""Conversation threads: one actor per thread id."""

from ganglion.threads.actor import ThreadActor, run_thread
from ganglion.threads.deps import Peers, SharedPromptFiles, ThreadDeps

__all__ = ["Peers", "SharedPromptFiles", "ThreadActor", "ThreadDeps", "run_thread"]
