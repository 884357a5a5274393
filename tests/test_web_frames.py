"""The web protocol's frames: one definition (`ganglion.web.frames`) for the client and
the server; the server validates client frames against it and builds its frames as it
says."""

from __future__ import annotations

import json
from typing import Any, get_args, get_type_hints

import pytest
import trio

from ganglion.backend import Submitted
from ganglion.messages import FinalReply, Notice, TextDelta, ToolActivity, TurnFailed, TurnStarted
from ganglion.store import SearchHit, StoredMessage, ThreadSummary, Turn
from ganglion.transcript import ChatMessage, ToolCall
from ganglion.web import frames
from ganglion.web.frames import MAX_ROW_ID
from ganglion.web.protocol import (
    FrameError,
    accepted_frame,
    error_frame,
    event_frame,
    history_frame,
    parse_client_frame,
    search_frame,
    send_id,
    threads_frame,
    turn_label,
    welcome_frame,
)
from ganglion.web.session import _coalesced

TAB = "web_0123456789abcdef"


def keys(typed_dict: Any) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


def test_the_client_builders_write_the_documented_frames() -> None:
    assert json.loads(frames.hello(TAB)) == {
        "v": 1,
        "type": "hello",
        "thread_id": TAB,
        "last_seen": None,
    }
    assert json.loads(frames.send("m1", "hi")) == {"v": 1, "type": "send", "id": "m1", "text": "hi"}
    assert json.loads(frames.history_request(12)) == {"v": 1, "type": "history", "before_id": 12}


BUILT = [
    frames.auth("secret"),
    frames.hello(TAB, last_seen=3),
    frames.send("m1", "hi"),
    frames.history_request(12),
    frames.list_threads(archived=True),
    frames.search("cats"),
    frames.rename(TAB, "Cats"),
    frames.archive(TAB),
    frames.delete(TAB),
    frames.stop("t1"),
    frames.rewind("m2", "t1"),
    frames.rewind("m2", "t1", "better"),
    frames.approve("5a706c51", "always"),
    frames.usage(),
    frames.versions("t1"),
    frames.choose_version("t1"),
]


@pytest.mark.parametrize("raw", BUILT, ids=lambda raw: json.loads(raw)["type"])
def test_the_server_accepts_what_the_client_builders_write(raw: str) -> None:
    assert parse_client_frame(raw) == json.loads(raw)


def test_every_client_frame_type_is_built_and_defined_once() -> None:
    assert {json.loads(raw)["type"] for raw in BUILT} == frames.CLIENT_FRAME_TYPES
    defined = {get_args(get_type_hints(f)["type"])[0] for f in frames.CLIENT_FRAMES}
    assert defined == frames.CLIENT_FRAME_TYPES


@pytest.mark.parametrize("raw", BUILT, ids=lambda raw: json.loads(raw)["type"])
def test_a_field_the_definition_does_not_have_is_refused(raw: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps({**json.loads(raw), "colour": "red"}))
    assert refused.value.code == "bad_frame"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hello", "thread_id": "web_xyz"},
        {"type": "hello", "thread_id": TAB, "last_seen": MAX_ROW_ID + 1},
        {"type": "send", "id": "has space", "text": "hi"},
        {"type": "send", "id": "m1\n", "text": "hi"},
        {"type": "send", "id": "m1", "text": ""},
        {"type": "history", "before_id": 0},
        {"type": "rename", "thread_id": TAB, "title": "x" * 201},
    ],
)
def test_the_limits_written_on_the_definition_are_enforced(frame: dict[str, Any]) -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps(frame))
    assert refused.value.code == "bad_frame"


@pytest.mark.parametrize(
    ("raw", "typed_dict"),
    [
        (welcome_frame(TAB, 65536), frames.WelcomeFrame),
        (error_frame("bad_frame", "no"), frames.ErrorFrame),
        (accepted_frame("m1", Submitted(f"{TAB}/m1", "queued")), frames.AcceptedFrame),
        (
            threads_frame([ThreadSummary(TAB, "Cats", 0.0, 1.0, False)], archived=False),
            frames.ThreadsFrame,
        ),
        (search_frame("cat", [SearchHit(TAB, "Cats", 3, "[cat]s")]), frames.SearchResultsFrame),
        (event_frame(TurnStarted(TAB, "t1")), frames.TurnStartedFrame),
        (event_frame(TextDelta(TAB, "t1", "Hel")), frames.DeltaFrame),
        (event_frame(ToolActivity(TAB, "t1", "c1", "shell", "start", "{}")), frames.ToolFrame),
        (event_frame(FinalReply(TAB, "t1", "Hello", outbox_id=4)), frames.ReplyFrame),
        (event_frame(TurnFailed(TAB, "t1", "model down")), frames.FailedFrame),
        (event_frame(Notice(TAB, "noted")), frames.NoticeFrame),
        (history_frame([], more=False), frames.HistoryFrame),
    ],
)
def test_every_server_frame_is_one_the_client_reads_with_its_defined_fields(
    raw: str, typed_dict: Any
) -> None:
    frame = frames.parse_server_frame(raw)
    assert frame is not None
    assert set(frame) == keys(typed_dict)


def test_history_items_have_the_defined_fields() -> None:
    call = ToolCall("c1", "shell", '{"command": "ls"}')
    page = [
        StoredMessage(1, TAB, "t1", ChatMessage("user", "hi"), 0.0),
        StoredMessage(2, TAB, "t1", ChatMessage("assistant", None, tool_calls=(call,)), 0.0),
        StoredMessage(
            3, TAB, "t1", ChatMessage("tool", "a\n", tool_call_id="c1", name="shell"), 0.0
        ),
    ]
    frame = frames.parse_server_frame(history_frame(page, more=True))
    assert frame is not None and frame["type"] == frames.HISTORY
    items = frame["messages"]
    assert all(set(item) <= keys(frames.HistoryItem) for item in items)
    assert items[1]["tool_calls"] == [{"id": "c1", "name": "shell", "arguments": call.arguments}]
    assert items[2]["tool_call_id"] == "c1" and items[2]["name"] == "shell"


def test_a_reply_goes_out_as_its_markdown_for_the_page_to_render() -> None:
    text = "| a |\n|---|\n| <b>1</b> |"
    reply = json.loads(event_frame(FinalReply(TAB, "t1", text, outbox_id=None)))
    page = [StoredMessage(1, TAB, "t1", ChatMessage("assistant", text), 0.0)]
    history = json.loads(history_frame(page, more=False))
    assert reply == {"type": "reply", "turn_id": "t1", "text": text, "outbox_id": None}
    assert history["messages"] == [{"id": 1, "role": "assistant", "content": text, "turn_id": "t1"}]


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "[1, 2]", '{"text": "no type"}', '{"type": "from_the_future"}', b"\xff"],
)
def test_the_client_skips_what_is_not_a_frame_it_knows(raw: str | bytes) -> None:
    assert frames.parse_server_frame(raw) is None


def test_a_reminder_turn_shows_its_text_never_its_instructions() -> None:
    content = "[A reminder you scheduled earlier is due now (x). Act on it.]\nstretch"
    frame = json.loads(event_frame(TurnStarted(TAB, "t1", "reminder", content)))
    assert (frame["source"], frame["label"]) == ("reminder", "stretch")
    page = [StoredMessage(1, TAB, "t1", ChatMessage("user", content), 0.0, source="reminder")]
    item = json.loads(history_frame(page, more=False))["messages"][0]
    assert item["label"] == "stretch" and item["content"] is None
    assert turn_label("heartbeat", "[Heartbeat review ...]\ngoals") == "Heartbeat review"


def test_a_quiet_heartbeat_review_is_left_out_of_the_history() -> None:
    page = [
        StoredMessage(
            1, TAB, "h1", ChatMessage("user", "[review]\ngoals"), 0.0, source="heartbeat"
        ),
        StoredMessage(2, TAB, "h1", ChatMessage("assistant", "HEARTBEAT_OK"), 0.0),
        StoredMessage(3, TAB, "t2", ChatMessage("user", "hi"), 0.0, source="user"),
    ]
    items = json.loads(history_frame(page, more=False))["messages"]
    assert [item["id"] for item in items] == [3]


def test_queued_turns_end_the_first_page_marked_queued() -> None:
    queued = Turn("t9", TAB, "user", "queued", ChatMessage("user", "later"), 0.0)
    items = json.loads(history_frame([], more=False, queued=[queued]))["messages"]
    assert items == [
        {
            "id": 0,
            "role": "user",
            "content": "later",
            "turn_id": "t9",
            "source": "user",
            "label": None,
            "queued": True,
        }
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (frames.send("m7", "x" * 100_000), "m7"),
        (frames.rewind("m8", "t1", "x" * 100_000), "m8"),
        (frames.history_request(3), None),
        ('{"type": "send", "id": 5}', None),
        ("not json", None),
    ],
)
def test_a_refused_send_is_named_by_its_id(raw: str, expected: str | None) -> None:
    assert send_id(raw) == expected


def test_streamed_text_that_piled_up_goes_out_as_one_frame_in_order() -> None:
    send, receive = trio.open_memory_channel[str | TextDelta](16)
    notice = event_frame(Notice(TAB, "noted"))
    for item in [
        TextDelta(TAB, "t1", "lo"),
        TextDelta(TAB, "t1", ", "),
        notice,
        TextDelta(TAB, "t1", "wor"),
        TextDelta(TAB, "t2", "other"),
        TextDelta(TAB, "t2", " turn"),
    ]:
        send.send_nowait(item)
    sent = _coalesced(TextDelta(TAB, "t1", "Hel"), receive)
    assert [json.loads(frame) for frame in sent] == [
        {"type": "delta", "turn_id": "t1", "text": "Hello, "},
        json.loads(notice),
        {"type": "delta", "turn_id": "t1", "text": "wor"},
        {"type": "delta", "turn_id": "t2", "text": "other turn"},
    ]
    assert _coalesced(notice, receive) == [notice]  # nothing waiting: sent as it came
