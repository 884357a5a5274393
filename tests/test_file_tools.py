"""File tools: confined to their roots, atomic, capped; used through a real turn."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ganglion.chat import ToolCall
from ganglion.config import FilesToolConfig
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.files import file_tools
from tests.daemon import daemon_config, open_daemon
from tests.fakellm import FakeLLM, Reply, calling_all

CTX = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def registry(root: Path, **limits: int) -> ToolRegistry:
    return ToolRegistry(file_tools(FilesToolConfig(roots=[root], **limits), root))


async def call(tools: ToolRegistry, name: str, **arguments: object) -> tuple[bool, str]:
    result = await tools.call(ToolCall("c", name, json.dumps(arguments)), CTX)
    return result.ok, result.content


async def test_write_read_edit_append_list_delete(root: Path) -> None:
    tools = registry(root)
    assert (await call(tools, "write_file", path="notes/a.txt", content="hello", create_dirs=True))[
        0
    ]
    assert await call(tools, "read_file", path="notes/a.txt") == (True, "hello")
    assert (await call(tools, "edit_file", path="notes/a.txt", old="hello", new="hello world"))[0]
    assert (await call(tools, "append_file", path="notes/a.txt", content="!"))[0]
    assert (root / "notes" / "a.txt").read_text() == "hello world!"
    ok, listing = await call(tools, "list_dir", path="notes")
    assert ok and listing == "a.txt  (12 bytes)"
    assert (await call(tools, "delete_file", path="notes/a.txt"))[0]
    assert not (root / "notes" / "a.txt").exists()


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "notes/../../outside.txt", "/etc/passwd", "~/.bashrc", "/"],
)
async def test_paths_outside_the_roots_are_refused(root: Path, path: str) -> None:
    tools = registry(root)
    for name, extra in (("read_file", {}), ("write_file", {"content": "x"}), ("delete_file", {})):
        ok, message = await call(tools, name, path=path, **extra)
        assert not ok
        assert "the allowed directories" in message
    assert not (root.parent / "outside.txt").exists()


async def test_symlinks_leading_out_are_refused(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, root / "link.txt")
    os.symlink(tmp_path, root / "escape")
    tools = registry(root)
    for path in ("link.txt", "escape/secret.txt"):
        ok, message = await call(tools, "read_file", path=path)
        assert not ok and "symbolic link" in message
    ok, _ = await call(tools, "write_file", path="link.txt", content="overwritten")
    assert not ok
    assert secret.read_text() == "top secret"


async def test_size_limits_hold(root: Path) -> None:
    tools = registry(root, max_read_bytes=1024, max_write_bytes=2048)
    ok, message = await call(tools, "write_file", path="big.txt", content="x" * 5000)
    assert not ok and "limit is 2048" in message
    (root / "big.txt").write_text("y" * 3000)
    ok, page = await call(tools, "read_file", path="big.txt")
    assert ok and page.startswith("y" * 1024) and "read again with offset=1024" in page


async def test_edit_needs_a_unique_excerpt(root: Path) -> None:
    (root / "f.txt").write_text("a a")
    tools = registry(root)
    ok, message = await call(tools, "edit_file", path="f.txt", old="a", new="b")
    assert not ok and "occurs 2 times" in message
    ok, message = await call(tools, "edit_file", path="f.txt", old="zzz", new="b")
    assert not ok and "does not occur" in message


async def test_writes_are_atomic_and_keep_permissions(root: Path) -> None:
    target = root / "script.sh"
    target.write_text("old")
    target.chmod(0o750)
    tools = registry(root)
    assert (await call(tools, "write_file", path="script.sh", content="new"))[0]
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o750
    assert [p.name for p in root.iterdir()] == ["script.sh"]  # no temporary left behind


async def test_the_model_uses_the_file_tools_in_a_turn(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        Reply(
            tool_calls=(
                (
                    "write_file",
                    json.dumps({"path": "skills/tea.md", "content": "# Brewing tea\nSteep 3 min."}),
                ),
            )
        ),
        Reply(tool_calls=(("read_file", json.dumps({"path": "../../etc/passwd"})),)),
        Reply("Saved your tea skill."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say("web_abababababababab", "remember how I brew tea")
        assert await daemon.collector.final("web_abababababababab") == ["Saved your tea skill."]
    assert (tmp_path / "skills" / "tea.md").read_text() == "# Brewing tea\nSteep 3 min."
    names = {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
    assert {
        "read_file",
        "write_file",
        "edit_file",
        "append_file",
        "list_dir",
        "delete_file",
    } <= names
    refused = fake_llm.requests[2]["messages"][-1]
    assert refused["role"] == "tool" and "the allowed directories" in refused["content"]


@pytest.mark.parametrize(
    "path", ["web_token", "conversation.db", "conversation.db-wal", ".//scheduler.db", "{root}/web_token"]
)
async def test_ganglions_private_files_are_refused(tmp_path: Path, path: str) -> None:
    (tmp_path / "web_token").write_text("secret-token")
    (tmp_path / "conversation.db").write_bytes(b"SQLite format 3\x00")
    (tmp_path / "sub").mkdir()
    tools = ToolRegistry(file_tools(FilesToolConfig(), tmp_path))
    path = path.format(root=tmp_path)
    for name, arguments in [
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("delete_file", {"path": path}),
    ]:
        ok, text = await call(tools, name, **arguments)
        assert not ok and "private files" in text, (name, text)
    assert (tmp_path / "web_token").read_text() == "secret-token"
    link = tmp_path / "innocent.txt"
    link.symlink_to(tmp_path / "web_token")
    ok, text = await call(tools, "read_file", path="innocent.txt")
    assert not ok and "symbolic link" in text


async def test_every_file_tool_works_in_a_turn(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        calling_all(
            ("write_file", {"path": "scripts/hello.sh", "content": "echo hi\n"}),
            ("append_file", {"path": "scripts/hello.sh", "content": "echo bye\n"}),
            ("edit_file", {"path": "scripts/hello.sh", "old": "hi", "new": "hello"}),
            ("read_file", {"path": "scripts/hello.sh"}),
            ("write_file", {"path": "scratch.txt", "content": "tmp"}),
            ("delete_file", {"path": "scratch.txt"}),
            ("list_dir", {"path": "scripts"}),
        ),
        Reply("Done."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say("web_abababababababab", "write me a script")
        assert await daemon.collector.final("web_abababababababab") == ["Done."]
    results = [m["content"] for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == 7 and not any(r.startswith("error") for r in results), results
    assert results[3] == "echo hello\necho bye\n"
    assert results[6] == "hello.sh  (20 bytes)"
    assert not (tmp_path / "scratch.txt").exists()
