"""The descriptor, ``daemon.json``: how clients find a running daemon.

The daemon writes it once it is ready to answer, and only then, so a client
that can read it can connect. The write is atomic (a temporary file in the same
directory, fsync, rename, fsync of the directory), so a reader sees the old
file or the new one, never half of one, and a crash mid-write leaves no
descriptor rather than a corrupt one. It is created 0600.

The daemon removes it as it exits, but only if it still names this daemon
(pid and start time): a descriptor that has since been replaced belongs to
someone else.

A reader that finds the file malformed or unreadable treats it as stale
(:class:`MalformedDescriptor`), as SPEC §4 says.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from bicameral.daemon._errors import DaemonError
from bicameral.daemon._files import read_regular, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = [
    "DESCRIPTOR_VERSION",
    "PROTOCOL_VERSION",
    "Descriptor",
    "MalformedDescriptor",
    "read_descriptor",
    "remove_descriptor_if",
    "write_descriptor",
]

DESCRIPTOR_VERSION = 1
PROTOCOL_VERSION = "1"
"""The version of the daemon's control protocol (``system.version``, the descriptor's)."""


class MalformedDescriptor(DaemonError):
    """The descriptor exists but cannot be read or parsed; it reads as stale."""


class Descriptor:
    """The parsed contents of a descriptor (SPEC §4).

    ``socket_path`` is the path the daemon actually bound (it may be a short
    fallback of the one asked for); it is ``None`` with the TCP transport,
    which instead has ``address`` (``"127.0.0.1:PORT"``) and ``token``.
    """

    __slots__ = (
        "address",
        "daemon_version",
        "http_url",
        "log_path",
        "pid",
        "process_start_time",
        "protocol_version",
        "socket_path",
        "started_at",
        "token",
        "transport",
    )

    def __init__(
        self,
        *,
        pid: int,
        process_start_time: float,
        started_at: str,
        daemon_version: str,
        protocol_version: str,
        log_path: str | None,
        transport: str = "unix",
        socket_path: str | None = None,
        address: str | None = None,
        token: str | None = None,
        http_url: str | None = None,
    ) -> None:
        self.pid = pid
        self.process_start_time = process_start_time
        self.started_at = started_at
        self.daemon_version = daemon_version
        self.protocol_version = protocol_version
        self.log_path = log_path
        self.transport = transport
        self.socket_path = socket_path
        self.address = address
        self.token = token
        #: The HTTP listener's base URL (``http://HOST:PORT``) when it is on.
        self.http_url = http_url

    def __repr__(self) -> str:
        return f"Descriptor({self.to_dict()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Descriptor):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of SPEC §4, key order as documented."""
        data: dict[str, Any] = {
            "descriptor_version": DESCRIPTOR_VERSION,
            "pid": self.pid,
            "socket_path": self.socket_path,
            "started_at": self.started_at,
            "process_start_time": self.process_start_time,
            "daemon_version": self.daemon_version,
            "protocol_version": self.protocol_version,
            "log_path": self.log_path,
            "transport": self.transport,
        }
        if self.transport == "tcp":
            data["address"] = self.address
            data["token"] = self.token
        if self.http_url is not None:
            data["http_url"] = self.http_url
        return data

    @classmethod
    def from_dict(cls, data: object) -> Descriptor:
        """Validate ``data``; raise :class:`MalformedDescriptor` naming the problem."""
        if not isinstance(data, dict):
            raise MalformedDescriptor("descriptor is not a JSON object")

        def field(name: str, types: tuple[type, ...], *, optional: bool = False) -> Any:
            value = data.get(name)
            if value is None and optional:
                return None
            # bool is an int subclass; a pid of `true` is not a pid.
            if isinstance(value, bool) or not isinstance(value, types):
                raise MalformedDescriptor(f"descriptor field {name!r} is missing or invalid")
            return value

        version = field("descriptor_version", (int,))
        if version != DESCRIPTOR_VERSION:
            raise MalformedDescriptor(f"descriptor_version {version} is not supported")
        pid = field("pid", (int,))
        if pid <= 0:
            raise MalformedDescriptor("descriptor field 'pid' is not a positive integer")
        transport = data.get("transport", "unix")
        if transport not in ("unix", "tcp"):
            raise MalformedDescriptor(f"descriptor transport {transport!r} is unknown")
        return cls(
            pid=pid,
            process_start_time=float(field("process_start_time", (int, float))),
            started_at=field("started_at", (str,)),
            daemon_version=field("daemon_version", (str,)),
            protocol_version=field("protocol_version", (str,)),
            log_path=field("log_path", (str,), optional=True),
            transport=transport,
            socket_path=field("socket_path", (str,), optional=transport == "tcp"),
            address=field("address", (str,)) if transport == "tcp" else None,
            token=field("token", (str,)) if transport == "tcp" else None,
            http_url=field("http_url", (str,), optional=True),
        )


def utc_timestamp(epoch: float | None = None) -> str:
    """``2026-11-24T14:15:10Z`` for ``epoch`` (default: now)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def read_descriptor(path: Path) -> Descriptor | None:
    """The descriptor at ``path``; ``None`` if there is none.

    Raises :class:`MalformedDescriptor` when the file exists but cannot be
    read or does not hold a valid descriptor.
    """
    # Only a regular file is read: a FIFO planted at the path would block,
    # a device never end (`read_regular` refuses them without waiting).
    try:
        raw = read_regular(path, limit=1 << 20)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MalformedDescriptor(f"cannot read descriptor {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise MalformedDescriptor(f"descriptor {path} is not valid JSON") from None
    return Descriptor.from_dict(data)


def write_descriptor(path: Path, descriptor: Descriptor) -> None:
    """Publish ``descriptor`` at ``path`` atomically, mode 0600."""
    write_atomic(path, json.dumps(descriptor.to_dict(), indent=2).encode() + b"\n")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_descriptor_if(path: Path, *, pid: int | None, start_time: float | None) -> bool:
    """Remove the descriptor at ``path`` if it names (pid, start_time).

    ``pid=None`` removes a malformed descriptor; ``start_time=None`` matches
    any descriptor naming ``pid`` (used for our own unreaped child). Returns whether the file was
    removed. The caller holds the lock, so no daemon can publish a new
    descriptor between the check and the unlink.
    """
    try:
        current = read_descriptor(path)
    except MalformedDescriptor:
        if pid is not None:
            return False
        _unlink_quietly(path)
        return True
    if current is None or pid is None or current.pid != pid:
        return False
    if start_time is None:
        _unlink_quietly(path)
        return True
    from bicameral.daemon._identity import start_times_equal

    if not start_times_equal(current.process_start_time, start_time):
        return False
    _unlink_quietly(path)
    return True
