"""What a state dir's descriptor says: is its process the daemon, does it answer.

The client side's common ground (:mod:`._start`, :mod:`._control`): reading
the descriptor and checking its process's identity (pid, start time, uid),
one JSON-RPC call to the daemon, and the cleanup of a stale descriptor and
socket, which only a holder of the lock does, so a cleanup can never race a
daemon that is starting at the same moment. Standard library only (and the
protocol's blocking client), as everything on the CLI's fast path.
"""

from __future__ import annotations

import os
import stat
import time

from bicameral.daemon._descriptor import (
    Descriptor,
    MalformedDescriptor,
    read_descriptor,
    remove_descriptor_if,
)
from bicameral.daemon._errors import DaemonError
from bicameral.daemon._identity import (
    identity_matches,
    mismatch,
    probe,
    reap_if_child,
)
from bicameral.daemon._lock import LockFile
from bicameral.protocol import RPCError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bicameral.daemon._paths import DaemonPaths

__all__ = [
    "KILL_WAIT",
    "Inspection",
    "call",
    "check_home",
    "clean_stale",
    "inspect",
    "is_alive",
    "ping",
    "remove_socket",
]

KILL_WAIT = 5.0
"""How long to wait for a SIGKILLed daemon to be gone; the kernel needs milliseconds."""


# --- inspection -------------------------------------------------------------


class Inspection:
    """What the descriptor says and whether its process is the daemon.

    ``state`` is ``missing`` (no descriptor), ``malformed``, ``stale`` (its
    process is dead, a zombie or another process) or ``alive``.
    """

    __slots__ = ("descriptor", "error", "state")

    def __init__(self, state: str, descriptor: Descriptor | None, error: str | None = None):
        self.state = state
        self.descriptor = descriptor
        self.error = error


def inspect(paths: DaemonPaths) -> Inspection:
    """Read the descriptor and check its process's identity (no RPC)."""
    try:
        descriptor = read_descriptor(paths.descriptor)
    except MalformedDescriptor as exc:
        return Inspection("malformed", None, str(exc))
    if descriptor is None:
        return Inspection("missing", None)
    info = probe(descriptor.pid)
    if identity_matches(info, descriptor.process_start_time, descriptor.socket_path):
        return Inspection("alive", descriptor)
    why = mismatch(info, descriptor.process_start_time, descriptor.socket_path)
    return Inspection("stale", descriptor, f"pid {descriptor.pid} {why}" if why else None)


def is_alive(paths: DaemonPaths) -> bool:
    """Whether the descriptor names a live daemon process (it may still not answer)."""
    return inspect(paths).state == "alive"


def check_home(paths: DaemonPaths, *, create: bool) -> bool:
    """Check the private directories; ``False`` if they do not exist and ``create`` is off."""
    from bicameral.daemon._paths import check_private_dir

    for directory in paths.private_dirs():
        if not create:
            try:
                os.lstat(directory)
            except FileNotFoundError:
                return False  # nothing was ever started there
            except OSError as exc:
                # A path below a regular file, a loop, no permission: not
                # "stopped" but unusable (status exits 4, SPEC §4).
                message = f"cannot use state directory {directory}: {exc.strerror}"
                raise DaemonError(message) from None
        check_private_dir(directory, create=create)
    return True


# --- RPC ----------------------------------------------------------------------


def call(descriptor: Descriptor, method: str, params: Any = None, *, timeout: float = 2.0) -> Any:
    """One JSON-RPC call to the daemon ``descriptor`` names (attaching with the token on TCP).

    Raises ``OSError`` (including ``TimeoutError`` and ``ConnectionError``)
    when the daemon cannot be reached or does not answer within ``timeout``,
    and ``RPCError`` when it answers with an error.
    """
    from bicameral.protocol import BlockingClient

    if descriptor.transport == "tcp":
        client = BlockingClient.connect_tcp(
            descriptor.address or "", descriptor.token or "", timeout=timeout
        )
    else:
        client = BlockingClient.connect_unix(descriptor.socket_path or "", timeout=timeout)
    with client:
        return client.call(method, params, timeout=timeout)


def ping(descriptor: Descriptor, deadline: float) -> bool:
    """Wait until the daemon answers ``system.version`` or ``deadline`` passes.

    Only reached for a daemon whose process is alive: normally it answers the
    first call. A daemon that is alive but whose socket refuses connections is
    retried every 50 ms until the deadline (the abnormal case SPEC §5 calls
    "alive but not answering").
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            call(descriptor, "system.version", timeout=remaining)
        except OSError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(0.05, remaining))
            continue
        except (RPCError, ValueError):
            return False
        return True


# --- cleanup ------------------------------------------------------------------


def remove_socket(path: str | None) -> None:
    if not path:
        return
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def clean_stale(paths: DaemonPaths, inspection: Inspection, lock: LockFile | None = None) -> bool:
    """Remove a stale or malformed descriptor (and a stale socket) under the lock.

    Returns ``False`` without touching anything when another process holds
    the lock: that is a daemon starting, which will replace both.
    """
    held = lock if lock is not None else LockFile.try_acquire(paths.lock)
    if held is None:
        return False
    try:
        descriptor = inspection.descriptor
        if inspection.state == "malformed":
            remove_descriptor_if(paths.descriptor, pid=None, start_time=None)
        elif descriptor is not None:
            reap_if_child(descriptor.pid)
            if remove_descriptor_if(
                paths.descriptor, pid=descriptor.pid, start_time=descriptor.process_start_time
            ):
                remove_socket(descriptor.socket_path)
    except OSError as exc:
        # A directory in its place, an unwritable (immutable, read-only) state dir...
        raise DaemonError(
            f"cannot remove the stale descriptor {paths.descriptor}: {exc.strerror}; "
            "remove it by hand"
        ) from None
    finally:
        if lock is None:
            held.release()
    return True
