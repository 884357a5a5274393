"""Conversation threads: one actor per thread id."""

from ganglion.threads.actor import ThreadActor, serve_thread
from ganglion.threads.deps import SharedPromptFiles, ThreadDeps

__all__ = ["SharedPromptFiles", "ThreadActor", "ThreadDeps", "serve_thread"]
