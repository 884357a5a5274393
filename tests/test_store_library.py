"""The conversation list the web chat shows: titles, order, archive, delete, search, and
the rows the owner sees that the model never does."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ganglion.store import ConversationStore
from ganglion.store.library import fts_query
from ganglion.transcript import ChatMessage

A = "web_aaaaaaaaaaaaaaaa"
B = "web_bbbbbbbbbbbbbbbb"
TIMEOUT = 10


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ConversationStore]:
    store = await ConversationStore.open(tmp_path / "conversation.db")
    try:
        yield store
    finally:
        await store.aclose()


async def converse(store: ConversationStore, thread: str, text: str, answer: str) -> None:
    await store.turns.load_thread(thread, interface="web")
    turn, _ = await store.turns.queue_turn(thread, ChatMessage("user", text), source="user")
    await store.turns.start_turn(turn.turn_id)
    await store.turns.finish_turn(
        turn.turn_id, state="done", final=ChatMessage("assistant", answer)
    )


async def test_conversations_are_listed_newest_first_titled_by_their_first_line(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, A, "Plan my   trip\nto Lisbon", "Sure.")
        await converse(store, B, "x" * 200, "Long.")
        await store.turns.load_thread("!room:server", interface="matrix")
        listed = await store.library.list_threads("web")
        assert [t.thread_id for t in listed] == [B, A]
        assert listed[1].title == "Plan my trip"
        assert len(listed[0].title) == 60 and listed[0].title.endswith("…")
        await converse(store, A, "and back", "Fine.")
        assert [t.thread_id for t in await store.library.list_threads("web")] == [A, B]
        assert (await store.library.list_threads("web"))[0].title == "Plan my trip"


async def test_rename_archive_and_delete(store: ConversationStore) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, A, "first", "one")
        await converse(store, B, "second", "two")
        await store.library.rename_thread(A, "  My   trip ")
        assert (await store.library.thread_summary(A)).title == "My trip"  # type: ignore[union-attr]
        await store.library.rename_thread(A, "")
        assert (await store.library.thread_summary(A)).title == "first"  # type: ignore[union-attr]
        await store.library.archive_thread(A, True)
        assert [t.thread_id for t in await store.library.list_threads("web")] == [B]
        assert [t.thread_id for t in await store.library.list_threads("web", archived=True)] == [A]
        await store.library.delete_thread(B)
        assert (await store.library.thread_summary(B)).deleted  # type: ignore[union-attr]
        assert await store.library.history_page(B) == ()
        assert await store.library.search("web", "second") == ()
        assert [t.thread_id for t in await store.library.list_threads("web")] == []


async def test_search_finds_words_and_prefixes_across_conversations(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, A, "What is the capital of France?", "Paris, of course.")
        await converse(store, B, "Café recipes", "Use good beans.")
        hits = await store.library.search("web", "pari")
        assert [(h.thread_id, h.snippet) for h in hits] == [(A, "[Paris], of course.")]
        assert [h.thread_id for h in await store.library.search("web", "cafe")] == [B]  # diacritics
        assert await store.library.search("web", 'AND OR "NEAR(') == ()  # taken literally
        assert await store.library.search("web", "   ") == ()


def test_the_owners_words_become_a_literal_fts_query() -> None:
    assert fts_query('say "hi" now') == '"say" """hi""" "now"*'
    assert fts_query("") == ""


async def test_display_rows_are_shown_never_loaded_for_the_model(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, A, "hello", "hi")
        command, created = await store.library.record(
            A, "command", "/help", interface="web", turn_id="c1"
        )
        again, created_again = await store.library.record(
            A, "command", "/help", interface="web", turn_id="c1"
        )
        assert created and not created_again and again.id == command.id
        await store.library.record(A, "notice", "Commands: …", interface="web")
        page = await store.library.history_page(A)
        assert [(m.kind, m.message.content) for m in page] == [
            (None, "hello"),
            (None, "hi"),
            ("command", "/help"),
            ("notice", "Commands: …"),
        ]
        assert page[0].source == "user"
        state = await store.turns.load_thread(A, interface="web")
        assert [m.message.content for m in state.messages] == ["hello", "hi"]
        await store.library.forget(command.id)
        assert [m.kind for m in await store.library.history_page(A)] == [None, None, "notice"]


def test_the_vendored_sanitiser_is_the_one_its_readme_names() -> None:
    vendor = Path(__file__).parents[1] / "src/ganglion/web/static/vendor/dompurify"
    readme = (vendor / "README.md").read_text()
    script = (vendor / "purify.es.js").read_bytes()
    version = re.search(r"# DOMPurify (\S+)", readme)
    assert version is not None
    assert f"@license DOMPurify {version.group(1)} ".encode() in script[:200]
    assert hashlib.sha256(script).hexdigest() in readme
    assert (vendor / "LICENSE").exists()
