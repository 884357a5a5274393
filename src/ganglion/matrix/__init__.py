"""The Matrix interface: matrix-nio's sans-IO client over httpx, on Trio, end-to-end
encrypted. Rooms are threads (`!room:server`).

    http.py      the boundary: nio request builders and parsers, httpx, our errors
    crypto.py    Olm/Megolm housekeeping between syncs and before encrypted sends
    sync.py      syncs become durable `UserMessage`s; the token moves only after
    events.py    which invites to accept and which events to answer (pure)
    media.py     what a media event says (pure), its bytes downloaded and decrypted
    intake.py    a media message's file into the inbox before it is handed on
    outgoing.py  replies and files from the outbox, typing notices, notices
    render.py    Markdown to sanitised HTML, long replies split (pure)
    stats.py     what the interface reports of itself (`ganglion status`, /metrics)
    keystore.py  the encryption store on disk, read without changing it (check)
    signing.py   canonical JSON, signed JSON, cross-signing key objects (pure)
    secretstorage.py  SSSS aes-hmac-sha2 and Element's recovery key format (pure)
    keyfile.py   the cross-signing private keys at rest, sealed with the pickle key
    identity.py  the bot's cross-signing identity at start-up: made, checked, restored
    trust.py     which devices are trusted: cross-signed by a pinned identity (pure)
    pins.py      the pinned identities and the notices given, on disk (SQLite)
    gate.py      the trust rule at work: before answering, before sharing room keys
    latekeys.py  a room told once when an event's keys do not come within a minute
    actor.py     `serve_matrix`: start-up, reconnection with backoff, the two tasks;
                 `matrix_child`: how the tree runs it

Nothing is imported here: matrix-nio is loaded only when the interface runs (or `check`
probes it), and the status and metrics read `stats.py` without it.
"""
