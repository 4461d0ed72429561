"""`write_atomic` and `read_regular`: the one way state files are replaced and config read."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bicameral.daemon import read_regular, write_atomic


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcf-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_write_atomic_replaces_with_the_mode_asked_whatever_the_umask(tmp: Path) -> None:
    path = tmp / "f"
    old = os.umask(0o077)
    try:
        write_atomic(path, b"one")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        write_atomic(path, b"two" * 100_000, mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"two" * 100_000
    assert [p.name for p in tmp.iterdir()] == ["f"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp: Path) -> None:
    path = tmp / "f"
    write_atomic(path, b"old")
    (tmp / "sub").mkdir()
    # Renaming a file over a non-empty directory fails after the temp file was written.
    (tmp / "sub" / "x").write_text("")
    with pytest.raises(OSError):
        write_atomic(tmp / "sub", b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp.iterdir()) == ["f", "sub"]


def test_write_atomic_never_writes_through_a_symlink_it_did_not_expect(tmp: Path) -> None:
    victim = tmp / "victim"
    victim.write_bytes(b"untouched")
    (tmp / "link").symlink_to(victim)
    write_atomic(tmp / "link", b"new")  # replaces the link itself, as rename does
    assert victim.read_bytes() == b"untouched"
    assert (tmp / "link").read_bytes() == b"new" and not (tmp / "link").is_symlink()


def test_read_regular_reads_a_file_and_refuses_the_rest_at_once(tmp: Path) -> None:
    (tmp / "f").write_bytes(b"x = 1\n")
    assert read_regular(tmp / "f") == b"x = 1\n"
    os.mkfifo(tmp / "fifo")  # no writer: a blocking open would hang here
    with pytest.raises(OSError, match="not a regular file"):
        read_regular(tmp / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        read_regular(Path("/dev/null"))
    with pytest.raises(IsADirectoryError):
        read_regular(tmp)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp / "missing")


def test_a_full_disk_names_the_file_that_could_not_be_written(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    path = tmp / "daemon.json"
    write_atomic(path, b"old")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as info:
        write_atomic(path, b"new")
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == f"[Errno 28] cannot write {path}: No space left on device"
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp.iterdir()] == ["daemon.json"]
