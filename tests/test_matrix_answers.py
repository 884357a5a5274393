"""Which turn answers which room message, and which reply an answer given again edits
(matrix/answers.py)."""

from __future__ import annotations

from pathlib import Path

from ganglion.matrix.addressing import SAID_KEPT
from ganglion.matrix.answerlog import AnswerLog
from ganglion.matrix.answers import Answers, Asked

ROOM = "!room:hs.example"
OWNER = "@owner:hs.example"


async def test_an_answer_given_again_edits_the_first_reply_across_edits() -> None:
    answers = Answers()
    await answers.asked(ROOM, "$m", OWNER, "t1")
    await answers.replied(ROOM, "t1", "$reply")
    await answers.replacing(ROOM, "t2", "t1")
    await answers.rewound("$m", "t2")
    assert answers.reply_target("t2") == "$reply"
    await answers.replied(ROOM, "t2", answers.reply_target("t2") or "$edit")
    # A second edit finds the latest turn, and still edits the first reply.
    assert answers.message("$m") == Asked(ROOM, OWNER, "t2")
    await answers.replacing(ROOM, "t3", "t2")
    assert answers.reply_target("t3") == "$reply"
    assert answers.message_of_reply("$reply") == ("$m", Asked(ROOM, OWNER, "t2"))


async def test_a_new_turn_with_nothing_to_replace_is_a_new_reply() -> None:
    answers = Answers()
    assert answers.reply_target("t1") is None
    assert answers.reply_target(None) is None
    await answers.replacing(ROOM, "t2", "t1")  # t1 had no reply delivered
    assert answers.reply_target("t2") is None


def test_the_running_turn_is_known_until_it_ends() -> None:
    answers = Answers()
    answers.started(ROOM, "t1")
    assert answers.running(ROOM) == "t1"
    answers.ended(ROOM, "t0")
    assert answers.running(ROOM) == "t1"
    answers.ended(ROOM, "t1")
    assert answers.running(ROOM) is None


async def test_an_answer_replies_to_its_message_once_another_came_after_it() -> None:
    answers = Answers()
    await answers.asked(ROOM, "$a", OWNER, "ta")
    assert answers.in_reply_to(ROOM, "ta") is None
    await answers.asked(ROOM, "$b", OWNER, "tb")
    assert answers.in_reply_to(ROOM, "ta") == "$a"
    assert answers.in_reply_to(ROOM, "tb") is None
    assert answers.in_reply_to(ROOM, None) is None


async def test_what_is_known_survives_a_restart(tmp_path: Path) -> None:
    before = Answers(AnswerLog(tmp_path))
    await before.asked(ROOM, "$m", OWNER, "t1")
    await before.replied(ROOM, "t1", "$reply")
    await before.replacing(ROOM, "t2", "t1")  # killed before the new answer went out
    after = Answers(AnswerLog(tmp_path))
    await after.open()
    assert after.message("$m") == Asked(ROOM, OWNER, "t1")
    assert after.reply_target("t2") == "$reply"
    assert after.message_of_reply("$reply") == ("$m", Asked(ROOM, OWNER, "t1"))
    assert (tmp_path / "answers.db").stat().st_mode & 0o777 == 0o600


async def test_a_group_rooms_context_is_kept_until_heard_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    before = Answers(AnswerLog(tmp_path))
    await before.said(ROOM, "$a", "Bob: one")
    await before.said(ROOM, "$b", "Carol: two")
    await before.said(ROOM, "$a", "Bob: one")  # seen again after a kill: kept once
    await before.keep_preamble("$m", ROOM, "Owner: ")
    after = Answers(AnswerLog(tmp_path))
    await after.open()
    assert after.said_lines(ROOM) == ["Carol: two", "Bob: one"]
    assert after.preamble("$m") == "Owner: " and after.preamble("$other") == ""
    await after.heard(ROOM)
    assert after.said_lines(ROOM) == []
    again = Answers(AnswerLog(tmp_path))
    await again.open()
    assert again.said_lines(ROOM) == [] and again.said_lines("!other:hs.example") == []


async def test_the_context_kept_is_capped() -> None:
    answers = Answers()
    for i in range(SAID_KEPT + 5):
        await answers.said(ROOM, f"${i}", f"Bob: {i}")
    lines = answers.said_lines(ROOM)
    assert len(lines) == SAID_KEPT and lines[-1] == f"Bob: {SAID_KEPT + 4}"


async def test_the_reply_to_the_newest_message_is_known_as_such() -> None:
    answers = Answers()
    await answers.asked(ROOM, "$a", OWNER, "ta")
    await answers.replied(ROOM, "ta", "$ra")
    assert answers.is_newest_reply(ROOM, "$ra")
    await answers.asked(ROOM, "$b", OWNER, "tb")
    assert not answers.is_newest_reply(ROOM, "$ra")
    assert not answers.is_newest_reply(ROOM, "$unknown")
    assert answers.newest(ROOM) == "$b" and answers.message_of_turn("ta") == "$a"
