"""Which invites the bot accepts and which room events it answers (matrix/events.py)."""

from __future__ import annotations

from typing import Any

from ganglion.config import MatrixConfig
from ganglion.matrix.events import (
    Answer,
    Edit,
    Incoming,
    Regenerate,
    Skip,
    Stop,
    classify_event,
    events_after_own_join,
    invite_refusal,
)

BOT = "@bot:hs.example"
OWNER = "@owner:hs.example"
ROOM = "!room:hs.example"


def config(**changes: Any) -> MatrixConfig:
    base: dict[str, Any] = {
        "homeserver": "https://hs.example",
        "user_id": BOT,
        "access_token": "t",
        "device_id": "D",
        "allowed_users": [OWNER],
    }
    return MatrixConfig.model_validate(base | changes)


def message(body: Any = "hello", *, sender: str = OWNER, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$e1",
        "sender": sender,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def test_invites_only_from_allowed_users() -> None:
    assert invite_refusal(config(), ROOM, OWNER) is None
    assert "not in matrix.allowed_users" in str(invite_refusal(config(), ROOM, "@eve:x"))
    assert invite_refusal(config(), ROOM, None) is not None
    assert invite_refusal(config(allowed_users=[], allow_all_users=True), ROOM, "@eve:x") is None


def test_invites_only_into_allowed_rooms_when_they_are_listed() -> None:
    listed = config(allowed_rooms=["!other:hs.example"])
    assert "not in matrix.allowed_rooms" in str(invite_refusal(listed, ROOM, OWNER))
    assert invite_refusal(listed, "!other:hs.example", OWNER) is None


def test_an_allowed_users_text_is_answered() -> None:
    assert classify_event(config(), BOT, ROOM, message()) == Incoming(ROOM, "$e1", OWNER, "hello")


def test_what_is_never_answered() -> None:
    cfg = config()
    edit = message("* hi", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"}})
    cases = {
        "own event": message(sender=BOT),
        "sender not in allowed_users": message(sender="@eve:hs.example"),
        "malformed edit": edit,
        "message type m.notice": message(msgtype="m.notice"),
        "redaction": {"type": "m.room.redaction", "event_id": "$r", "sender": OWNER},
        "redacted": {"type": "m.room.message", "event_id": "$x", "sender": OWNER, "content": {}},
        "malformed content: body is not text": message(["not", "text"]),
        "empty message": message("   "),
        "not a message (m.room.topic)": {"type": "m.room.topic", "event_id": "$t", "sender": OWNER},
        "malformed event": {"type": "m.room.message"},
    }
    for reason, event in cases.items():
        assert classify_event(cfg, BOT, ROOM, event) == Skip(reason), reason


def test_messages_outside_the_allowed_rooms_are_ignored() -> None:
    listed = config(allowed_rooms=["!other:hs.example"])
    assert classify_event(listed, BOT, ROOM, message()) == Skip("room not in allowed_rooms")


def test_a_reply_fallback_is_dropped_and_an_emote_says_who() -> None:
    reply = message(
        "> <@owner:hs.example> earlier\n> more\n\nthe answer",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": "$e0"}}},
    )
    found = classify_event(config(), BOT, ROOM, reply)
    assert isinstance(found, Incoming) and found.text == "the answer"
    emote = classify_event(config(), BOT, ROOM, message("waves", msgtype="m.emote"))
    assert isinstance(emote, Incoming) and emote.text == f"* {OWNER} waves"


def member(user: str, membership: str, previous: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.room.member",
        "state_key": user,
        "sender": user,
        "content": {"membership": membership},
    }
    if previous is not None:
        event["unsigned"] = {"prev_content": {"membership": previous}}
    return event


def test_only_what_follows_the_bots_own_join_counts() -> None:
    before, after = message("old"), message("new")
    timeline = [before, member(BOT, "join"), after]
    assert list(events_after_own_join(BOT, timeline)) == [after]
    assert list(events_after_own_join(BOT, [before, after])) == [before, after]
    renamed = [before, member(BOT, "join", previous="join"), after]
    assert list(events_after_own_join(BOT, renamed)) == renamed


def edit(body: str, *, sender: str = OWNER, msgtype: str = "m.text") -> dict[str, Any]:
    new = {"msgtype": msgtype, "body": body}
    return message(
        f"* {body}",
        sender=sender,
        **{"m.new_content": new, "m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"}},
    )


def reaction(key: str, *, sender: str = OWNER) -> dict[str, Any]:
    relation = {"rel_type": "m.annotation", "event_id": "$e0", "key": key}
    return {
        "type": "m.reaction",
        "event_id": "$r1",
        "sender": sender,
        "content": {"m.relates_to": relation},
    }


def test_an_edit_carries_the_new_text_of_the_original() -> None:
    found = classify_event(config(), BOT, ROOM, edit("  fixed  "))
    assert found == Edit(ROOM, "$e1", OWNER, "$e0", "fixed")


def test_an_edit_is_taken_only_as_a_message_would_be() -> None:
    cfg = config()
    assert classify_event(cfg, BOT, ROOM, edit("x", sender="@eve:x")) == Skip(
        "sender not in allowed_users"
    )
    assert classify_event(cfg, BOT, ROOM, edit("  ")) == Skip("edit to an empty message")
    notice = edit("x", msgtype="m.notice")
    assert classify_event(cfg, BOT, ROOM, notice) == Skip("edit to a message of type m.notice")
    assert classify_event(cfg, BOT, ROOM, edit("x", sender=BOT)) == Skip("own event")


def test_stop_is_the_command_or_a_stop_reaction() -> None:
    cfg = config()
    assert classify_event(cfg, BOT, ROOM, message(" /stop ")) == Stop(ROOM, "$e1", OWNER, None)
    for key in ("\u23f9\ufe0f", "\u23f9"):
        assert classify_event(cfg, BOT, ROOM, reaction(key)) == Stop(ROOM, "$r1", OWNER, "$e0")


def test_a_repeat_reaction_regenerates() -> None:
    found = classify_event(config(), BOT, ROOM, reaction("\U0001f501"))
    assert found == Regenerate(ROOM, "$r1", OWNER, "$e0")


def test_approval_answers_are_reactions_on_a_question_or_replies_to_it() -> None:
    """Rule 6."""
    cfg = config()
    assert classify_event(cfg, BOT, ROOM, reaction("\u2705")) == Answer(
        ROOM, "$r1", OWNER, "$e0", "allow"
    )
    assert classify_event(cfg, BOT, ROOM, reaction("\u274c\ufe0f")) == Answer(
        ROOM, "$r1", OWNER, "$e0", "deny"
    )
    reply = {"m.in_reply_to": {"event_id": "$q"}}
    for said, answer in [("yes", "allow"), ("No.", "deny"), (" ALWAYS! ", "always")]:
        found = classify_event(cfg, BOT, ROOM, message(said, **{"m.relates_to": reply}))
        assert found == Answer(ROOM, "$e1", OWNER, "$q", answer, said.strip())  # type: ignore[arg-type]
    # Not an answer: no reply, more words, a stranger.
    assert classify_event(cfg, BOT, ROOM, message("yes")) == Incoming(ROOM, "$e1", OWNER, "yes")
    wordy = message("yes please, and also", **{"m.relates_to": reply})
    assert isinstance(classify_event(cfg, BOT, ROOM, wordy), Incoming)
    stranger = message("yes", sender="@eve:x", **{"m.relates_to": reply})
    assert classify_event(cfg, BOT, ROOM, stranger) == Skip("sender not in allowed_users")
    assert classify_event(cfg, BOT, ROOM, reaction("\u2705", sender="@eve:x")) == Skip(
        "sender not in allowed_users"
    )


def test_other_reactions_and_strangers_reactions_are_not_acted_on() -> None:
    cfg = config()
    assert classify_event(cfg, BOT, ROOM, reaction("\U0001f44d")) == Skip("reaction \U0001f44d")
    assert classify_event(cfg, BOT, ROOM, reaction("\u2714")) == Skip("reaction \u2714")
    stranger = reaction("\u23f9\ufe0f", sender="@eve:x")
    assert classify_event(cfg, BOT, ROOM, stranger) == Skip("sender not in allowed_users")
    broken = {"type": "m.reaction", "event_id": "$r", "sender": OWNER, "content": {"x": 1}}
    assert classify_event(cfg, BOT, ROOM, broken) == Skip("malformed reaction")


def test_a_message_says_what_it_replies_to_its_thread_and_whom_it_mentions() -> None:
    reply = message(
        "> <@bot:hs.example> it rains\n>\n> a lot\n\nwhy?",
        **{
            "m.relates_to": {"m.in_reply_to": {"event_id": "$bot"}},
            "m.mentions": {"user_ids": [BOT]},
        },
    )
    found = classify_event(config(), BOT, ROOM, reply)
    assert isinstance(found, Incoming)
    assert (found.text, found.reply_to, found.thread_root) == ("why?", "$bot", None)
    assert found.mentions == frozenset({BOT}) and found.conversation == ROOM
    plain = classify_event(config(), BOT, ROOM, message("hi"))
    assert isinstance(plain, Incoming) and plain.mentions is None  # no m.mentions at all
    nobody = classify_event(config(), BOT, ROOM, message("hi", **{"m.mentions": {}}))
    assert isinstance(nobody, Incoming) and nobody.mentions == frozenset()


def test_a_thread_message_belongs_to_its_threads_conversation() -> None:
    relation = {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$latest"},
    }
    found = classify_event(
        config(), BOT, ROOM, message("in the thread", **{"m.relates_to": relation})
    )
    assert isinstance(found, Incoming)
    assert (found.thread_root, found.reply_to) == ("$root", None)  # the reply is a fallback
    assert found.conversation == f"{ROOM}/$root"
    relation["is_falling_back"] = False
    real = classify_event(
        config(), BOT, ROOM, message("a reply in it", **{"m.relates_to": relation})
    )
    assert isinstance(real, Incoming) and real.reply_to == "$latest"
    stop = classify_event(config(), BOT, ROOM, message("/stop", **{"m.relates_to": relation}))
    assert stop == Stop(ROOM, "$e1", OWNER, None, "$root")


def test_a_yes_that_answers_no_question_is_the_message_it_would_be() -> None:
    relation = {"m.in_reply_to": {"event_id": "$bot"}}
    found = classify_event(config(), BOT, ROOM, message("yes", **{"m.relates_to": relation}))
    assert isinstance(found, Answer) and found.message is not None
    assert (found.message.text, found.message.reply_to) == ("yes", "$bot")
