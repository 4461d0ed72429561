"""The IPC transport: Unix sockets where they exist, loopback TCP with a token elsewhere.

CPython on Windows has no ``socket.AF_UNIX``, so the daemon listens on
loopback TCP there, with a random token every connection presents (SPEC §6);
the TCP transport is selectable everywhere and tested on Linux. What a Unix
socket offers beyond a byte stream differs too: the peer's credentials
(``SO_PEERCRED`` on Linux, ``LOCAL_PEERCRED``/``LOCAL_PEERPID`` on macOS) and
descriptor passing (``SCM_RIGHTS``, POSIX only), which the bridge uses to
hand its stdio to the daemon.
"""

from __future__ import annotations

import errno
import os
import sys

from bicameral.platform._os import CURRENT, Platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable

# socket, struct and array are imported where used: the CLI's fast paths
# import this module and most of them never open a socket.

__all__ = [
    "can_pass_fds",
    "default_transport",
    "fd_opened_for",
    "fds_from_ancillary",
    "fds_space",
    "listener_of",
    "peer_uid",
    "send_fds",
    "socket_path_limit",
    "socket_path_problem",
    "unix_socket",
]

# macOS <sys/un.h>: getsockopt(SOL_LOCAL, LOCAL_PEERCRED) fills a struct
# xucred (cr_version: u_int, then cr_uid: uid_t); LOCAL_PEERPID a pid_t.
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001
_LOCAL_PEERPID = 0x002


def default_transport(platform: Platform = CURRENT) -> str:
    """``"unix"`` where CPython has AF_UNIX sockets, ``"tcp"`` on Windows."""
    return "tcp" if platform.windows else "unix"


def socket_path_limit(platform: Platform = CURRENT) -> int | None:
    """Longest AF_UNIX path in bytes, or ``None`` where there is no AF_UNIX.

    ``sockaddr_un.sun_path`` is 108 bytes on Linux and 104 on macOS and the
    BSDs, one of which holds the terminating NUL.
    """
    if platform.windows:
        return None
    return 107 if platform.linux else 103


def socket_path_problem(path: str | os.PathLike[str], platform: Platform = CURRENT) -> str | None:
    """Why ``path`` cannot be bound as a Unix socket on ``platform``; ``None`` if it can.

    The message names the length, the limit and the ways out, instead of
    ``bind``'s bare "AF_UNIX path too long".
    """
    limit = socket_path_limit(platform)
    size = len(os.fsencode(path))
    if limit is None:
        return f"{platform.label} has no Unix sockets: use the TCP transport (--transport tcp)"
    if size <= limit:
        return None
    return (
        f"socket path {os.fspath(path)} is {size} bytes, over {platform.label}'s "
        f"AF_UNIX limit of {limit}: use a shorter --home or --socket, or --transport tcp"
    )


def unix_socket(kind: int | None = None) -> socket.socket:
    """A new AF_UNIX socket (``SOCK_STREAM`` unless ``kind`` says otherwise).

    On Windows, an ``OSError`` that says what to use instead.
    """
    import socket

    if sys.platform == "win32":
        raise OSError(errno.EAFNOSUPPORT, "no Unix sockets on Windows: use the TCP transport")
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind is None else kind)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket; ``None`` if unknown."""
    if sys.platform == "win32":
        return None
    import socket
    import struct

    try:
        if sys.platform == "linux":
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            return int(uid)
        creds = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, struct.calcsize("2I"))
        _version, uid = struct.unpack("2I", creds[:8])
        return int(uid)
    except OSError:
        return None


def bytes_waiting(sock: socket.socket) -> int | None:
    """How many received bytes wait unread in the kernel (FIONREAD); ``None`` if unknown."""
    if sys.platform == "win32":  # no FIONREAD through fcntl
        return None
    import fcntl
    import termios

    try:
        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return int.from_bytes(waiting, sys.byteorder)


def _peer_pid(sock: socket.socket) -> int | None:
    if sys.platform == "win32":
        return None
    import socket
    import struct

    if sys.platform == "linux":
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _uid, _gid = struct.unpack("3i", creds)
        return int(pid)
    raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, struct.calcsize("i"))
    return int(struct.unpack("i", raw)[0])


def listener_of(socket_path: str, timeout: float = 1.0) -> tuple[int, int | None] | None:
    """(pid, uid) of the process listening on a Unix socket, as the kernel attests.

    The credentials are the listener's from the time it called ``listen``.
    ``None`` when nothing listens there, and on Windows.
    """
    try:
        sock = unix_socket()
    except OSError:
        return None
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
            pid = _peer_pid(sock)
            uid = peer_uid(sock)
        except OSError:
            return None
    return (pid, uid) if pid is not None and pid > 0 else None


# --- descriptor passing -------------------------------------------------------


def can_pass_fds(platform: Platform = CURRENT) -> bool:
    """Whether a Unix socket here can carry file descriptors (``SCM_RIGHTS``)."""
    import socket

    return platform.posix and hasattr(socket, "SCM_RIGHTS")


def send_fds(sock: socket.socket, fds: Iterable[int]) -> None:
    """Send ``fds`` with one byte, ``F``, over a connected Unix socket."""
    if sys.platform == "win32":
        raise OSError(errno.EOPNOTSUPP, "no descriptor passing on Windows")
    import array
    import socket

    data = array.array("i", list(fds)).tobytes()
    sock.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, data)])


def fds_space(count: int) -> int:
    """The ancillary buffer size ``recvmsg`` needs for ``count`` descriptors."""
    if sys.platform == "win32":
        raise OSError(errno.EOPNOTSUPP, "no descriptor passing on Windows")
    import array
    import socket

    return socket.CMSG_SPACE(count * array.array("i").itemsize)


def fds_from_ancillary(ancdata: Iterable[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in ``recvmsg``'s ancillary data (a truncated tail dropped)."""
    if sys.platform == "win32":
        return []
    import array
    import socket

    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fds.itemsize
            fds.frombytes(data[:usable])
    return list(fds)


def fd_opened_for(fd: int, direction: int) -> bool:
    """Whether ``fd`` can be read (``os.O_RDONLY``) or written (``os.O_WRONLY``).

    An ``O_PATH`` descriptor, or one open the other way, cannot.
    """
    if sys.platform == "win32":
        return False
    import fcntl

    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return False
    if flags & getattr(os, "O_PATH", 0):
        return False
    return flags & os.O_ACCMODE in (os.O_RDWR, direction)
