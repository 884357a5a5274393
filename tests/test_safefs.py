"""safefs: paths resolved beneath a handle, no link followed, with openat2 and without."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganglion import safefs
from ganglion.safefs import (
    BadPath,
    DirEntry,
    LinkRefused,
    NotFound,
    SafeDir,
    SafePathError,
    WrongKind,
    open_dir,
    split_path,
)

HAS_OPENAT2 = safefs.use_openat2


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once through openat2 (where the kernel has it) and once through the
    O_NOFOLLOW walk."""
    if request.param == "openat2" and not HAS_OPENAT2:
        pytest.skip("this kernel has no openat2")
    monkeypatch.setattr(safefs, "use_openat2", request.param == "openat2")
    if request.param == "walk":

        def unexpected(*args: object) -> int:
            raise AssertionError("openat2 called while the walk is forced")

        monkeypatch.setattr(safefs, "_openat2", unexpected)
    yield str(request.param)
    # openat2 answered every call: an ENOSYS would have switched to the walk.
    assert safefs.use_openat2 == (request.param == "openat2")


@pytest.fixture
def root(tmp_path: Path, resolver: str) -> Iterator[SafeDir]:
    (tmp_path / "root").mkdir()
    with open_dir(tmp_path / "root") as handle:
        yield handle


def base(tmp_path: Path) -> Path:
    return tmp_path / "root"


def test_an_enosys_kernel_falls_back_to_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def enosys(*args: object) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(safefs, "use_openat2", True)
    monkeypatch.setattr(safefs, "_openat2", enosys)
    (tmp_path / "f").write_text("x")
    with open_dir(tmp_path) as root:
        assert root.read_bytes("f")[0] == b"x"
    assert safefs.use_openat2 is False


@pytest.mark.parametrize(
    ("path", "parts"), [("a/b.txt", ("a", "b.txt")), ("./a//b/", ("a", "b")), (".", ())]
)
def test_relative_paths_are_split_into_components(path: str, parts: tuple[str, ...]) -> None:
    assert split_path(path) == parts


@pytest.mark.parametrize("path", ["", "/etc/passwd", "a/../b", "..", "a\x00b"])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(BadPath):
        split_path(path)


def test_read_write_list_unlink(root: SafeDir, tmp_path: Path) -> None:
    root.mkdir("notes/deep", parents=True)
    assert root.write_atomic("notes/deep/a.txt", b"hello") is False
    assert root.write_atomic("notes/deep/a.txt", b"hello world") is True
    data, st = root.read_bytes("notes/deep/a.txt")
    assert data == b"hello world" and st.st_size == 11
    assert root.read_bytes("notes/deep/a.txt", offset=6, limit=3)[0] == b"wor"
    assert root.list("notes/deep") == [DirEntry("a.txt", "file", 11)]
    assert root.list("notes") == [DirEntry("deep", "dir", root.stat("notes/deep").st_size)]
    root.unlink("notes/deep/a.txt")
    assert root.list("notes/deep") == []
    with pytest.raises(NotFound):
        root.read_bytes("notes/deep/a.txt")
    with pytest.raises(WrongKind):
        root.unlink("notes")


def test_a_symlinked_file_is_never_followed(root: SafeDir, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host file")
    (base(tmp_path) / "x.md").symlink_to(secret)
    with pytest.raises(LinkRefused, match="symbolic link"):
        root.read_bytes("x.md")
    with pytest.raises(LinkRefused):
        root.write_atomic("x.md", b"overwritten")
    assert secret.read_text() == "host file"
    assert root.list() == [DirEntry("x.md", "link", len(str(secret)))]
    root.unlink("x.md")  # removes the link, not its target
    assert secret.read_text() == "host file"


def test_a_symlinked_directory_is_never_entered(root: SafeDir, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("outside")
    (base(tmp_path) / "d").symlink_to(outside)
    for attempt in (
        lambda: root.read_bytes("d/f.txt"),
        lambda: root.write_atomic("d/new.txt", b"x"),
        lambda: root.list("d"),
        lambda: root.unlink("d/f.txt"),
        lambda: root.mkdir("d/sub", parents=True),
        lambda: root.stat("d/f.txt"),
    ):
        with pytest.raises(LinkRefused, match="symbolic link"):
            attempt()
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt"]


def test_a_link_to_proc_is_refused(root: SafeDir, tmp_path: Path) -> None:
    (base(tmp_path) / "env").symlink_to("/proc/self/environ")
    (base(tmp_path) / "fd").symlink_to("/proc/self/fd")
    with pytest.raises(LinkRefused):
        root.read_bytes("env")
    with pytest.raises(LinkRefused):
        root.read_bytes("fd/0")


def test_a_hardlinked_file_is_neither_read_nor_replaced(root: SafeDir, tmp_path: Path) -> None:
    token = tmp_path / "web_token"
    token.write_text("secret-token")
    os.link(token, base(tmp_path) / "innocent.txt")
    with pytest.raises(LinkRefused, match="2 hard links"):
        root.read_bytes("innocent.txt")
    with pytest.raises(LinkRefused, match="hard links"):
        root.write_atomic("innocent.txt", b"x")
    assert token.read_text() == "secret-token"


def test_a_fifo_is_refused_without_blocking(root: SafeDir, tmp_path: Path) -> None:
    os.mkfifo(base(tmp_path) / "pipe")
    with pytest.raises(WrongKind, match="not a regular file"):
        root.read_bytes("pipe")


def test_writes_are_atomic_keep_the_mode_and_leave_no_temporary(
    root: SafeDir, tmp_path: Path
) -> None:
    target = base(tmp_path) / "script.sh"
    target.write_text("old")
    target.chmod(0o750)
    inode = target.stat().st_ino
    root.write_atomic("script.sh", b"new")
    assert target.read_text() == "new"
    assert target.stat().st_ino != inode  # replaced, not rewritten in place
    assert target.stat().st_mode & 0o777 == 0o750
    root.write_atomic("fresh.txt", b"x")
    assert (base(tmp_path) / "fresh.txt").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in base(tmp_path).iterdir()) == ["fresh.txt", "script.sh"]


def test_wrong_kinds_and_missing_parents(root: SafeDir) -> None:
    root.mkdir("dir")
    root.write_atomic("file", b"x")
    with pytest.raises(WrongKind):
        root.read_bytes("dir")
    with pytest.raises(WrongKind):
        root.write_atomic("dir", b"x")
    with pytest.raises(WrongKind):
        root.read_bytes("file/inner")
    with pytest.raises(NotFound):
        root.write_atomic("missing/file", b"x")
    with pytest.raises(NotFound):
        root.mkdir("missing/sub")
    root.mkdir("dir")  # existing: fine


def test_errors_name_only_the_given_path(root: SafeDir, tmp_path: Path) -> None:
    (base(tmp_path) / "x").symlink_to(tmp_path / "private-place")
    with pytest.raises(SafePathError) as info:
        root.read_bytes("x/y")
    assert str(tmp_path) not in str(info.value) and "'x/y'" in str(info.value)


def test_a_directory_swapped_for_a_link_never_leaks(root: SafeDir, tmp_path: Path) -> None:
    """A thread swaps `r` between a directory and a link to outside while reads and
    writes go through `r/`: none of them reaches outside."""
    inside, outside = base(tmp_path) / "r", tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("OUTSIDE")
    parked = base(tmp_path) / "parked"
    parked.mkdir()
    (parked / "f.txt").write_text("inside")
    link = base(tmp_path) / "link"
    link.symlink_to(outside)
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            for source, target in ((parked, inside), (inside, parked), (link, inside)):
                os.rename(source, target)
                time.sleep(0)  # let the other thread see this state
            os.rename(inside, link)

    thread = threading.Thread(target=toggle)
    thread.start()
    wins = reads = tries = 0
    try:
        # A few hundred tries, and more until some reads found the directory in place
        # (the race was live), within a bound.
        while tries < 400 or (reads < 10 and tries < 20_000):
            tries += 1
            with contextlib.suppress(SafePathError):
                data, _ = root.read_bytes("r/f.txt")
                wins += data == b"OUTSIDE"
                reads += 1
            with contextlib.suppress(SafePathError):
                root.write_atomic(f"r/w{tries % 50}.txt", b"x")
    finally:
        stop.set()
        thread.join()
    assert wins == 0
    assert reads >= 10
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt"]
