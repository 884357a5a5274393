"""Which turn answers which room message, and which reply an answer given again edits
(matrix/answers.py)."""

from __future__ import annotations

from pathlib import Path

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
