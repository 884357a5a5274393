"""Thread ids: where a conversation lives (ganglion/ids.py)."""

from __future__ import annotations

import pytest

from ganglion.ids import interface_for, is_valid_thread_id, matrix_room_of, matrix_thread_id


def test_an_element_thread_is_a_matrix_conversation_of_its_room() -> None:
    thread = matrix_thread_id("!abc:example.org", "$root_event-1")
    assert thread == "!abc:example.org/$root_event-1"
    assert is_valid_thread_id(thread) and interface_for(thread) == "matrix"
    assert matrix_room_of(thread) == ("!abc:example.org", "$root_event-1")
    assert matrix_room_of("!abc:example.org") == ("!abc:example.org", None)
    assert matrix_thread_id("!abc:example.org") == "!abc:example.org"


@pytest.mark.parametrize(
    "thread_id",
    ["!abc:example.org/", "!abc:example.org/root", "!abc:exa/mple.org", "!abc:example.org/$a b"],
)
def test_a_matrix_id_with_anything_but_a_thread_root_after_it_is_refused(thread_id: str) -> None:
    assert not is_valid_thread_id(thread_id)
