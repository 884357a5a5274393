"""Conversation threads: one actor per thread id.

    ids.py       what a thread id says (which interface owns it); pure, cheap to import
    deps.py      `ThreadDeps`: what a thread actor uses and does not own
    actor.py     `ThreadActor` and `serve_thread`: history, turns, commands, compaction
    turn.py      the model loop of one turn (tool calls, repair of cut-off pairs)
    handlers.py  the slash commands, on the actor's narrow `CommandHost` interface
    commands.py  parsing a slash command (pure)
    registry.py  the registry of thread actors, and waking the turns a stop cut off

Nothing is imported here, so `ganglion.threads.ids` costs only itself (the terminal
client uses it).
"""
