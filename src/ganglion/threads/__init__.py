"""Conversation threads: one actor per thread id.

    deps.py          `ThreadDeps`: what a thread actor uses and does not own
    actor.py         `serve_thread` and its `ThreadActor`: the mailbox, the queue of work,
                     turns' life cycle (start, stop, fail, finish) and rewind
    conversation.py  `Conversation`: the history and summary, the prompt built from them,
                     its budget and fitting, compaction
    turn.py          the model loop of one turn (tool calls), on a `Conversation` and an
                     `emit` callable
    media.py         what a turn makes of its message's files: pictures for the model,
                     a voice message heard
    repair.py        repairing tool calls cut off in a history (pure)
    offers.py        which tools a request offers within the context window (pure)
    review.py        a heartbeat review of a conversation (its own prompt, no trace when
                     silent)
    handlers.py      what the slash commands do, on a `Conversation` and an `emit` callable
    commands.py      parsing a slash command and the texts it answers with (pure)
    registry.py      the registry of thread actors, and waking the turns a stop cut off

Nothing is imported here. Thread ids are `ganglion.ids` (the terminal client uses them).
"""
