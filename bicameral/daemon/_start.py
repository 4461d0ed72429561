"""``start``: spawn the detached daemon, return once it is ready (SPEC §5, §6).

- The lock decides who spawns. ``start`` takes ``daemon.lock`` before it
  spawns and passes the locked descriptor to the daemon, so of many
  concurrent starts exactly one spawns; the others wait for that daemon's
  descriptor (a directory watch: inotify on Linux) and report it as
  already-running, with the same pid.
- Readiness comes down a pipe (:mod:`._readiness`): ``start`` returns the
  moment the daemon has published its descriptor, or prints why it could not.
  A failed start kills what it spawned, so nothing is left behind.
- The daemon's options travel in its argv, made from the options table
  (:mod:`._options`).

Standard library only, as everything on the CLI's fast path.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from bicameral.daemon._descriptor import (
    Descriptor,
    remove_descriptor_if,
)
from bicameral.daemon._errors import DaemonError
from bicameral.daemon._inspect import (
    KILL_WAIT,
    check_home,
    clean_stale,
    inspect,
    ping,
    remove_socket,
)
from bicameral.daemon._lock import LOCK_FD_ENV, LockFile, read_holder
from bicameral.daemon._options import serve_args
from bicameral.daemon._paths import unwritable_dir
from bicameral.daemon._readiness import READY_FD_ENV, read_readiness
from bicameral.platform import (
    DirectoryWatch,
    default_transport,
    fd_to_env,
    locks_pass_to_children,
    spawn_detached,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from bicameral.daemon._paths import DaemonPaths
    from bicameral.platform import DetachedChild

__all__ = ["StartError", "start"]


class StartError(DaemonError):
    """The daemon could not be started; ``log_path`` names where to look."""

    def __init__(self, reason: str, log_path: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_path = log_path


def _started(status: str, descriptor: Descriptor, paths: DaemonPaths) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": status,
        "pid": descriptor.pid,
        "socket_path": descriptor.socket_path,
        "descriptor_path": str(paths.descriptor),
    }
    if descriptor.transport == "tcp":
        result["transport"] = "tcp"
        result["address"] = descriptor.address
    if descriptor.http_url is not None:
        result["http_url"] = descriptor.http_url
    if status == "started":
        result["servers"] = _server_counts(_ready_details.pop(id(descriptor), ""))
    return result


#: What a freshly started daemon said with READY (see `_spawn_and_wait`).
_ready_details: dict[int, str] = {}


def _server_counts(detail: str) -> dict[str, int]:
    """The configured servers by state at readiness, from the daemon's READY line.

    The daemon sends them with READY (``READY {"starting": 3}``), so a start
    reports them without another round trip. Readiness never waits for
    servers: right after a start they are ``starting``, warming up.
    """

    try:
        counts = json.loads(detail) if detail else {}
    except ValueError:
        return {}
    if not isinstance(counts, dict):
        return {}
    return {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}


def start(
    paths: DaemonPaths,
    *,
    wait: float = 10.0,
    transport: str | None = None,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Start a detached daemon and return once it is ready (SPEC §5 ``start``).

    Returns ``{"status": "started" | "already-running", "pid", "socket_path",
    "descriptor_path"}``. Raises :class:`StartError` (reason and log path) when
    it cannot start, and :class:`DaemonError` for an unusable state dir or a
    daemon that is alive but does not answer within ``wait`` seconds.
    ``python`` and ``env`` default to this interpreter and ``os.environ``;
    ``options`` are more of ``serve``'s options for the daemon (``http``,
    ``log-level``: `bicameral.daemon._options`), passed in its argv.
    """
    check_home(paths, create=True)
    transport = transport or default_transport()
    deadline = time.monotonic() + wait
    watcher: DirectoryWatch | None = None
    try:
        while True:
            found = inspect(paths)
            if found.state == "alive":
                assert found.descriptor is not None
                if ping(found.descriptor, deadline):
                    return _started("already-running", found.descriptor, paths)
                raise DaemonError(
                    f"daemon pid {found.descriptor.pid} is running but not answering "
                    f"after {wait:g} s; run `bicameral daemon stop` (log: {paths.log})"
                )
            unwritable = unwritable_dir(paths.lock.parent)
            if unwritable is not None:
                raise DaemonError(unwritable)
            lock = LockFile.try_acquire(paths.lock)
            if lock is not None:
                with lock:
                    if found.state in ("malformed", "stale"):
                        clean_stale(paths, found, lock)
                    spawned = _spawn_and_wait(
                        paths, lock, _daemon_argv(paths, transport, python, options), deadline, env
                    )
                if spawned is not None:
                    return _started("started", spawned, paths)
                # BUSY: lost the lock to another daemon after all; wait for it.
                continue
            # Another start holds the lock: its daemon is starting. Arm the
            # watcher first, then look again, so no change can slip between.
            if watcher is None:
                # A rename onto the descriptor (it is published) or the last
                # close of the lock file (the starting daemon died with it).
                watcher = DirectoryWatch(
                    paths.descriptor.parent, (paths.descriptor.name, paths.lock.name)
                )
                continue
            if not watcher.wait(deadline):
                holder = read_holder(paths.lock)
                # No descriptor names it, so `stop` will not signal it: say who it is.
                raise DaemonError(
                    f"another daemon (pid {holder or '?'}) holds {paths.lock} but did not "
                    f"become ready within {wait:g} s; it may still be starting (see "
                    f"{paths.log}), or kill it if it is stuck"
                )
    finally:
        if watcher is not None:
            watcher.close()


def _daemon_argv(
    paths: DaemonPaths, transport: str, python: str | None, options: Mapping[str, Any] | None
) -> list[str]:
    """``python -m bicameral.daemon serve ...``: `options` and this state dir's paths."""
    values = {
        **(options or {}),
        "detached": True,
        "home": str(paths.home),
        "descriptor": str(paths.descriptor),
        "socket": str(paths.socket),
        "transport": transport,
        "config": str(paths.config) if paths.config_explicit else None,
    }
    return [python or sys.executable, "-m", "bicameral.daemon", *serve_args(values)]


def _spawn_and_wait(
    paths: DaemonPaths,
    lock: LockFile,
    argv: list[str],
    deadline: float,
    env: Mapping[str, str] | None,
) -> Descriptor | None:
    """Spawn the daemon holding ``lock`` and wait for its readiness line.

    Returns its descriptor once ready, ``None`` if it reports BUSY, and raises
    :class:`StartError` otherwise, after making sure it is gone.
    """
    log_path = str(paths.log)
    read_end, write_end = os.pipe()
    try:
        try:
            log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise StartError(f"cannot open log {log_path}: {exc.strerror}", log_path) from None
        lock_fd: int | None = lock.fileno()
        if not locks_pass_to_children():  # the daemon locks by itself there
            lock.release()
            lock_fd = None
        try:
            child = _spawn(argv, write_end, lock_fd, log_fd, env)
        except OSError as exc:
            raise StartError(f"cannot run {argv[0]}: {exc.strerror}", log_path) from None
        finally:
            os.close(log_fd)
            os.close(write_end)
            write_end = -1
        message = read_readiness(read_end, max(0.0, deadline - time.monotonic()))
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if message.kind == "READY":
        found = inspect(paths)
        if found.descriptor is not None and found.descriptor.pid == child.pid:
            _ready_details[id(found.descriptor)] = message.detail
            return found.descriptor
        child.kill_and_wait()
        _remove_leftovers(paths, child.pid)
        raise StartError("daemon reported ready but its descriptor is missing", log_path)
    if message.kind == "BUSY":
        child.wait(KILL_WAIT)
        return None
    if message.kind == "ERROR":
        if not child.wait(KILL_WAIT):
            child.kill_and_wait()
        _remove_leftovers(paths, child.pid)
        raise StartError(message.detail or "daemon failed to start", log_path)
    if message.kind == "EOF":
        code = child.wait(KILL_WAIT)
        if code is None:
            child.kill_and_wait()
        _remove_leftovers(paths, child.pid)
        what = f"exit status {code}" if code is not None else "no status"
        if code is not None and code < 0:
            import signal

            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        raise StartError(f"daemon exited during startup ({what})", log_path)
    # TIMEOUT: kill it, and whatever it may have published meanwhile.
    child.kill_and_wait()
    _remove_leftovers(paths, child.pid)
    raise StartError("daemon did not become ready in time", log_path)


def _remove_leftovers(paths: DaemonPaths, pid: int) -> None:
    """After a failed start, under its lock: remove what the dead daemon may have left.

    A daemon killed (or crashed) before it was ready cannot clean up after
    itself: its descriptor, if it got that far, and its socket file stay.
    The caller still holds the lock, so no other daemon can be using that
    socket path (SPEC §5: a failed start leaves no socket or descriptor).
    """
    with contextlib.suppress(OSError):
        remove_descriptor_if(paths.descriptor, pid=pid, start_time=None)
    remove_socket(str(paths.socket))
    from bicameral.daemon._paths import environment_fallback_socket_path
    from bicameral.platform import socket_path_limit

    limit = socket_path_limit()
    if limit is not None and len(os.fsencode(paths.socket)) > limit:
        remove_socket(str(environment_fallback_socket_path(paths.socket)))


def _spawn(
    argv: list[str],
    ready_fd: int,
    lock_fd: int | None,
    log_fd: int,
    base_env: Mapping[str, str] | None,
) -> DetachedChild:
    """Spawn the detached daemon with the readiness pipe and the lock inherited.

    `bicameral.platform.spawn_detached` does it: a new session (POSIX) or no
    console and a new process group (Windows), stdin and stdout on the null
    device, stderr appended to the log (so even an import error is
    recorded). On Linux the daemon starts with SIGHUP, SIGTERM and SIGINT
    *blocked* (the mask survives ``exec``): one that arrives while it is
    still importing stays pending until its first lines have installed
    their handlers and unblocked them. A SIGHUP then becomes a reload after
    readiness, a stop signal a clean exit. ``lock_fd`` is ``None`` where a
    lock cannot be handed down (Windows: the daemon takes it itself).
    """
    env = dict(os.environ if base_env is None else base_env)
    env[READY_FD_ENV] = fd_to_env(ready_fd)
    inherit = [ready_fd]
    env.pop(LOCK_FD_ENV, None)
    if lock_fd is not None:
        env[LOCK_FD_ENV] = fd_to_env(lock_fd)
        inherit.append(lock_fd)
    return spawn_detached(argv, env, inherit=inherit, log_fd=log_fd)
