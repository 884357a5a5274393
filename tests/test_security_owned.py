"""Issue 26, rows 4, 5 and 7, through a real `ganglion run` process: the scripted fake
model calls the file tools and the shell over the web chat, as a prompt-injected model
in one conversation would, to read what another conversation did (reminders.json, the
log, the Matrix store) or to fill the host's memory and disk.

Each test reads what the model was told (the tool results in the requests the fake model
received) and what is on the host afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.fakellm import FakeLLM, Reply, Step, calling, calling_all
from tests.support.live import LiveDaemon, open_live_daemon
from tests.test_security_files import LONG_TURNS, tool_results, turn

pytestmark = pytest.mark.slow

NEEDS_BWRAP = pytest.mark.usefixtures("bwrap")
ALICE = "web_aaaaaaaaaaaaaaaa"
BOB = "web_bbbbbbbbbbbbbbbb"
BOBS_SECRET = "Bob's surprise party for Alice, Friday"
LOG_MARKER = "store-dir-marker-in-the-log"


async def bob_sets_a_reminder(live: LiveDaemon) -> None:
    """Conversation B sets a reminder: reminders.json then holds its text and thread id."""
    assert (await turn(live, BOB, "remind me"))["text"] == "Set."
    assert BOBS_SECRET in (live.data_dir / "reminders.json").read_text()


def script_bob_then(fake_llm: FakeLLM, *attack: Step) -> None:
    fake_llm.script(
        calling("set_reminder", text=BOBS_SECRET, kind="at", schedule="in 3d"),
        Reply("Set."),
        *attack,
        Reply("Done."),
    )


def install_dir_overrides(root: Path, **tools: object) -> dict[str, Any]:
    """A file-tools root that holds the install dir (config, data, logs) and a custom
    Matrix store inside it (Matrix itself off: the store dir is still Ganglion's)."""
    return {
        "tools": {"files": {"roots": [str(root)]}, **tools},
        "matrix": {"enabled": False, "store_dir": str(root / "element-store")},
    }


async def test_row_4_and_7_the_file_tools_cannot_read_reminders_logs_or_the_matrix_store(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """With a root holding the install dir, conversation A asks for reminders.json, the
    log, a custom Matrix store and the listings that would show them."""
    root = tmp_path / "live"
    store = root / "element-store"
    store.mkdir(parents=True)
    (store / "olm.db").write_text("olm account")
    (store / "sync_token").write_text("s123_sync")
    reads = [
        "data/reminders.json",
        str(root / "data" / "reminders.json"),
        "logs/ganglion.log",
        "element-store/sync_token",
        "data/matrix/keys",
    ]
    attack = calling_all(
        *(("read_file", {"path": path}) for path in reads),
        ("list_dir", {"path": "logs"}),
        ("list_dir", {"path": "element-store"}),
        ("list_dir", {"path": "."}),
        ("list_dir", {"path": "data"}),
        ("write_file", {"path": "data/reminders.json", "content": "[]"}),
        ("delete_file", {"path": "logs/ganglion.log"}),
        ("write_file", {"path": "element-store/x", "content": "x"}),
    )
    script_bob_then(fake_llm, attack)
    async with open_live_daemon(tmp_path, fake_llm.base_url, **install_dir_overrides(root)) as live:
        await bob_sets_a_reminder(live)
        assert (await turn(live, ALICE, "look around"))["text"] == "Done."
        log = (root / "logs" / "ganglion.log").read_text()
    results = tool_results(fake_llm)  # Alice's conversation only
    assert len(results) == 12
    top, data = results[7:9]
    for text in [*results[:7], *results[9:]]:
        assert text.startswith("error: ") and "Ganglion's private files" in text, text
    assert BOBS_SECRET not in "".join(results) and BOB not in "".join(results)
    assert "logs  (Ganglion's own; private)" in top.splitlines()
    assert "element-store  (Ganglion's own; private)" in top.splitlines()
    assert "config.yaml  (Ganglion's own; private)" in top.splitlines()
    assert "reminders.json  (Ganglion's own; private)" in data.splitlines()
    assert "MEMORIES.txt  (" in data and "bytes)" in data
    assert BOBS_SECRET in (root / "data" / "reminders.json").read_text()
    assert (store / "sync_token").read_text() == "s123_sync" and not (store / "x").exists()
    assert "ganglion.log" in {p.name for p in (root / "logs").iterdir()} and log


@NEEDS_BWRAP
async def test_row_4_and_7_the_sandbox_cannot_read_reminders_logs_or_the_matrix_store(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The owner made the whole install dir writable to the sandbox: `cat` still fails on
    reminders.json, the log and the Matrix store."""
    root = tmp_path / "live"
    (root / "element-store").mkdir(parents=True)
    (root / "element-store" / "sync_token").write_text("s123_sync")
    command = (
        f"cat {root}/data/reminders.json; cat {root}/logs/ganglion.log; "
        f"ls -A {root}/logs {root}/element-store; cat {root}/element-store/sync_token; "
        # Not all of root: run-1.out is the test's capture of the daemon's stderr.
        f"grep -rh surprise {root}/data {root}/logs {root}/element-store 2>/dev/null; echo end"
    )
    sandbox = {"shell": {"sandbox": "bwrap", "writable_paths": [str(root)]}}
    script_bob_then(fake_llm, calling("shell", command=command))
    async with open_live_daemon(
        tmp_path, fake_llm.base_url, **install_dir_overrides(root, **sandbox)
    ) as live:
        await bob_sets_a_reminder(live)
        assert (await turn(live, ALICE, "look around"))["text"] == "Done."
    result = tool_results(fake_llm)[-1]
    assert BOBS_SECRET not in result and "s123_sync" not in result, result
    # Files are covered by /dev/null (which a user namespace may not open), directories
    # by empty ones.
    assert f"cat: {root}/data/reminders.json: Permission denied" in result
    assert f"cat: {root}/logs/ganglion.log: No such file or directory" in result
    assert f"cat: {root}/element-store/sync_token: No such file or directory" in result
    assert result.endswith("end\n[exit code 0]"), result


async def test_row_5_a_file_tool_write_past_the_data_quota_is_refused(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """`tools.files.max_data_bytes` of 1 MiB, 900 kB of it already taken (by a command,
    say): of two writes of 100 kB the second is refused, and so is an append that would
    double the first; nothing of them is written."""
    chunk = "x" * 100_000
    attack = calling_all(
        *(("write_file", {"path": f"fill-{n}.txt", "content": chunk}) for n in range(2)),
        ("append_file", {"path": "fill-0.txt", "content": chunk}),
    )
    fake_llm.script(attack, Reply("Done."))
    files = {"max_data_bytes": 1024**2}
    async with open_live_daemon(
        tmp_path, fake_llm.base_url, start=False, tools={"files": files}, llm=LONG_TURNS
    ) as live:
        data = live.data_dir
        data.mkdir(parents=True)
        (data / "scripts").mkdir()
        (data / "scripts" / "big.bin").write_bytes(b"\0" * 900_000)
        await live.start()
        assert (await turn(live, ALICE, "fill the disk"))["text"] == "Done."
    first, second, appended = tool_results(fake_llm)
    assert first == "wrote 100000 bytes to fill-0.txt"
    for text, size in ((second, 100_000), (appended, 200_000)):
        assert text.startswith(f"error: writing {size} bytes to "), text
        assert "past the limit of 1048576 bytes (tools.files.max_data_bytes)" in text
        assert "nothing was written" in text and "raise tools.files.max_data_bytes" in text
    assert not (data / "fill-1.txt").exists()
    assert (data / "fill-0.txt").stat().st_size == 100_000
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]


@NEEDS_BWRAP
async def test_row_5_the_sandboxes_tmp_home_and_dev_shm_stop_at_their_caps(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """300 MB into each of /tmp, $HOME and /dev/shm with `tmp_bytes` of 8 MiB: each stops
    at its share (4, 2 and 2 MiB) with ENOSPC; /dev itself takes nothing."""
    fills = " ; ".join(
        f"head -c 300000000 /dev/zero > {where}/fill; wc -c < {where}/fill"
        for where in ("/tmp", "$HOME", "/dev/shm")
    )
    command = f"{fills}; echo x > /dev/fill"
    shell = {"sandbox": "bwrap", "tmp_bytes": 8 * 1024**2}
    fake_llm.script(calling("shell", command=command), Reply("Done."))
    async with open_live_daemon(tmp_path, fake_llm.base_url, tools={"shell": shell}) as live:
        assert (await turn(live, ALICE, "fill the memory"))["text"] == "Done."
    (result,) = tool_results(fake_llm)
    assert result.count("head: error writing 'standard output': No space left on device") == 3
    lines = result.splitlines()
    sizes = [int(line) for line in lines if line.isdigit()]
    assert sizes == [4 * 1024**2, 2 * 1024**2, 2 * 1024**2], result
    assert "/dev/fill: Read-only file system" in result
