"""Reminders: croniter schedules, a SQLite ledger, exactly-once firing.

    schedule.py  what a schedule says and when it fires next (pure)
    store.py     `ReminderStore`: the reminders and the ledger of their slots (SQLite)
    actor.py     `ReminderActor` and `reminders_child`: firing what comes due
    text.py      how a reminder reads in a list (pure)
    cli.py       `ganglion reminders list|cancel`, beside a running daemon

Nothing is imported here, so `ganglion reminders` loads only the store it reads.
"""
