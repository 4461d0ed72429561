"""The descriptor: SPEC §4's shape, atomic 0600 writes, malformed reads as stale."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bicameral.daemon._descriptor import (
    Descriptor,
    MalformedDescriptor,
    read_descriptor,
    remove_descriptor_if,
    utc_timestamp,
    write_descriptor,
)


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unix_descriptor(**overrides: Any) -> Descriptor:
    fields: dict[str, Any] = {
        "pid": 16051,
        "process_start_time": 1764000000.12,
        "started_at": "2026-11-24T14:15:10Z",
        "daemon_version": "0.1.0",
        "protocol_version": "1",
        "log_path": "/home/u/.bicameral/daemon.log",
        "socket_path": "/home/u/.bicameral/daemon.sock",
    }
    fields.update(overrides)
    return Descriptor(**fields)


def test_unix_descriptor_has_exactly_the_spec_fields(tmp: Path) -> None:
    path = tmp / "daemon.json"
    write_descriptor(path, unix_descriptor())
    data = json.loads(path.read_text())
    assert data == {
        "descriptor_version": 1,
        "pid": 16051,
        "socket_path": "/home/u/.bicameral/daemon.sock",
        "started_at": "2026-11-24T14:15:10Z",
        "process_start_time": 1764000000.12,
        "daemon_version": "0.1.0",
        "protocol_version": "1",
        "log_path": "/home/u/.bicameral/daemon.log",
        "transport": "unix",
    }
    assert read_descriptor(path) == unix_descriptor()


def test_tcp_descriptor_carries_address_and_token(tmp: Path) -> None:
    path = tmp / "daemon.json"
    d = unix_descriptor(
        socket_path=None, transport="tcp", address="127.0.0.1:4242", token="ab" * 32
    )
    write_descriptor(path, d)
    data = json.loads(path.read_text())
    assert data["transport"] == "tcp"
    assert data["socket_path"] is None
    assert data["address"] == "127.0.0.1:4242"
    assert data["token"] == "ab" * 32
    assert read_descriptor(path) == d


def test_write_is_0600_whatever_the_umask_and_leaves_no_temp_file(tmp: Path) -> None:
    path = tmp / "daemon.json"
    old = os.umask(0)
    try:
        write_descriptor(path, unix_descriptor())
        write_descriptor(path, unix_descriptor(pid=2))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp.iterdir()] == ["daemon.json"]
    read = read_descriptor(path)
    assert read is not None and read.pid == 2


def test_a_missing_descriptor_reads_as_none(tmp: Path) -> None:
    assert read_descriptor(tmp / "daemon.json") is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b"\xff\xfe",
        b'{"descriptor_version": 2}',
        b'{"descriptor_version": 1, "pid": "12"}',
        b'{"descriptor_version": 1, "pid": true}',
        b'{"descriptor_version": 1, "pid": -1}',
        json.dumps({**unix_descriptor().to_dict(), "transport": "pigeon"}).encode(),
        json.dumps({**unix_descriptor().to_dict(), "process_start_time": "x"}).encode(),
        json.dumps({**unix_descriptor().to_dict(), "transport": "tcp"}).encode(),
    ],
)
def test_malformed_descriptors_raise(tmp: Path, content: bytes) -> None:
    path = tmp / "daemon.json"
    path.write_bytes(content)
    with pytest.raises(MalformedDescriptor):
        read_descriptor(path)


def test_an_unreadable_descriptor_is_malformed(tmp: Path) -> None:
    path = tmp / "daemon.json"
    path.mkdir()  # reading a directory fails
    with pytest.raises(MalformedDescriptor):
        read_descriptor(path)


def test_remove_only_if_it_still_names_us(tmp: Path) -> None:
    path = tmp / "daemon.json"
    write_descriptor(path, unix_descriptor())
    assert not remove_descriptor_if(path, pid=16051, start_time=1.0)
    assert not remove_descriptor_if(path, pid=99, start_time=1764000000.12)
    assert not remove_descriptor_if(path, pid=None, start_time=None)  # not malformed
    assert path.exists()
    assert remove_descriptor_if(path, pid=16051, start_time=1764000000.12)
    assert not path.exists()
    assert not remove_descriptor_if(path, pid=16051, start_time=1764000000.12)


def test_remove_a_malformed_one(tmp: Path) -> None:
    path = tmp / "daemon.json"
    path.write_text("nope")
    assert not remove_descriptor_if(path, pid=1, start_time=1.0)
    assert remove_descriptor_if(path, pid=None, start_time=None)
    assert not path.exists()


def test_utc_timestamp_format() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00Z"
