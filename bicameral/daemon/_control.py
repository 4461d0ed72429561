"""The client side: start, stop, inspect a daemon from another process.

This module is what ``bicameral daemon start|stop|status`` run, on the CLI's
fast path, so it imports only the standard library (and the protocol's
blocking client): no trio, anyio, typer or psutil. The results are plain
dicts, exactly the JSON objects of SPEC §5, so the CLI only prints them.

The rules it keeps (SPEC §5, §6):

- The lock decides who spawns. ``start`` takes ``daemon.lock`` before it
  spawns and passes the locked descriptor to the daemon, so of many
  concurrent starts exactly one spawns; the others wait for that daemon's
  descriptor (a directory watch: inotify on Linux) and report it as
  already-running, with the same pid.
- Readiness comes down a pipe (:mod:`._readiness`): ``start`` returns the
  moment the daemon has published its descriptor, or prints why it could not.
  A failed start kills what it spawned, so nothing is left behind.
- Identity before signals: ``stop`` signals only a process whose pid, start
  time and uid match the descriptor, through a pin that holds it (a pidfd on
  Linux, a process handle on Windows), and waits for its exit through the
  same pin, so a zombie (exited, not yet reaped) is seen as stopped at once.
- Only a lock holder deletes: a stale descriptor or socket is removed only
  while holding the lock, so a cleanup can never race a daemon that is
  starting at the same moment.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time

from bicameral.daemon._descriptor import (
    Descriptor,
    MalformedDescriptor,
    read_descriptor,
    remove_descriptor_if,
)
from bicameral.daemon._errors import DaemonError
from bicameral.daemon._identity import (
    ProcessHandle,
    identity_matches,
    mismatch,
    probe,
    reap_if_child,
)
from bicameral.daemon._lock import LockFile, lock_held, read_holder
from bicameral.daemon._options import serve_args
from bicameral.daemon._paths import unwritable_dir
from bicameral.daemon._readiness import READY_FD_ENV, read_readiness
from bicameral.platform import (
    DirectoryWatch,
    default_transport,
    fd_to_env,
    locks_pass_to_children,
    spawn_detached,
    stop_uses_rpc,
)
from bicameral.protocol import RPCError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from bicameral.daemon._paths import DaemonPaths
    from bicameral.platform import DetachedChild

__all__ = [
    "LOCK_FD_ENV",
    "StartError",
    "call",
    "default_transport",
    "inspect",
    "is_alive",
    "restart",
    "start",
    "status",
    "stop",
]

LOCK_FD_ENV = "BICAMERAL_LOCK_FD"
"""Environment variable carrying the inherited, already locked ``daemon.lock`` descriptor."""

STATUS_EXIT_CODES = {
    "running": 0,
    "stale": 1,
    "stopped": 3,
    "starting": 4,
    "stopping": 4,
    "unresponsive": 4,
    "unknown": 4,
}
"""LSB ``status`` exit codes (SPEC §5)."""

KILL_WAIT = 5.0
"""How long to wait for a SIGKILLed daemon to be gone; the kernel needs milliseconds."""


class StartError(DaemonError):
    """The daemon could not be started; ``log_path`` names where to look."""

    def __init__(self, reason: str, log_path: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_path = log_path


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


def _check_home(paths: DaemonPaths, *, create: bool) -> bool:
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


def _ping(descriptor: Descriptor, deadline: float) -> bool:
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


def _remove_socket(path: str | None) -> None:
    if not path:
        return
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _clean_stale(paths: DaemonPaths, inspection: Inspection, lock: LockFile | None = None) -> bool:
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
                _remove_socket(descriptor.socket_path)
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


# --- start ----------------------------------------------------------------------


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
    import json

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
    _check_home(paths, create=True)
    transport = transport or default_transport()
    deadline = time.monotonic() + wait
    watcher: DirectoryWatch | None = None
    try:
        while True:
            found = inspect(paths)
            if found.state == "alive":
                assert found.descriptor is not None
                if _ping(found.descriptor, deadline):
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
                        _clean_stale(paths, found, lock)
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
    _remove_socket(str(paths.socket))
    from bicameral.daemon._paths import environment_fallback_socket_path
    from bicameral.platform import socket_path_limit

    limit = socket_path_limit()
    if limit is not None and len(os.fsencode(paths.socket)) > limit:
        _remove_socket(str(environment_fallback_socket_path(paths.socket)))


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


# --- stop ---------------------------------------------------------------------------


def stop(paths: DaemonPaths, *, timeout: float = 10.0) -> dict[str, Any]:
    """Stop the daemon the descriptor names (SPEC §5 ``stop``).

    Returns ``{"status": "stopped", "pid"}``, ``{"status": "already-stopped"}``,
    or ``{"status": "stopped", "stale": true, "pid"}`` after cleaning a stale
    descriptor. Graceful first (SIGTERM; on Windows the ``system.shutdown``
    RPC), then SIGKILL / TerminateProcess after ``timeout`` seconds.

    A daemon that is still starting (it holds the lock, no descriptor yet)
    is waited for, within ``timeout``, and then stopped: never
    ``already-stopped`` while one is coming up.
    """
    if not _check_home(paths, create=False):
        return {"status": "already-stopped"}
    found = inspect(paths)
    deadline = time.monotonic() + timeout
    while found.state == "missing" and lock_held(paths.lock):
        if time.monotonic() >= deadline:
            raise DaemonError(
                f"a daemon (pid {read_holder(paths.lock) or '?'}) is still starting after "
                f"{timeout:g} s; try again, or see its log {paths.log}"
            )
        time.sleep(0.02)
        found = inspect(paths)
    if found.state == "missing":
        return {"status": "already-stopped"}
    if found.state == "malformed":
        _clean_stale(paths, found)
        return {"status": "stopped", "stale": True, "pid": None}
    descriptor = found.descriptor
    assert descriptor is not None
    handle = (
        ProcessHandle.open(descriptor.pid, descriptor.process_start_time, descriptor.socket_path)
        if found.state == "alive"
        else None
    )
    if handle is None:
        _clean_stale(paths, Inspection("stale", descriptor))
        stale: dict[str, Any] = {"status": "stopped", "stale": True, "pid": descriptor.pid}
        if found.error:
            stale["reason"] = found.error  # "pid N is not running", "... was reused"
        return stale
    killed = False
    with handle:
        if stop_uses_rpc():
            with contextlib.suppress(OSError, RPCError, ValueError):
                call(descriptor, "system.shutdown", timeout=min(timeout, 2.0))
        else:
            handle.terminate()
        if not handle.wait(timeout):
            handle.kill()
            killed = True
            if not handle.wait(KILL_WAIT):  # pragma: no cover - unkillable (D state)
                raise DaemonError(f"daemon pid {descriptor.pid} did not exit even after SIGKILL")
    # After a graceful stop the daemon removed both itself; after a SIGKILL
    # they are left over and are ours to clean.
    try:
        _clean_stale(paths, Inspection("stale", descriptor))
    except DaemonError as exc:
        raise DaemonError(f"daemon pid {descriptor.pid} stopped, but {exc}") from None
    result: dict[str, Any] = {"status": "stopped", "pid": descriptor.pid}
    if killed:
        result["killed"] = True
    return result


# --- status ------------------------------------------------------------------------


def status(paths: DaemonPaths, *, timeout: float = 2.0) -> dict[str, Any]:
    """The daemon's status (SPEC §5): running, stopped, stale or unresponsive.

    Every key is always present (``null`` when it does not apply);
    :data:`STATUS_EXIT_CODES` maps ``status`` to the LSB exit code.
    """
    result: dict[str, Any] = {
        "status": "stopped",
        "pid": None,
        "socket_path": None,
        "descriptor_path": str(paths.descriptor),
        "uptime_s": None,
        "daemon_version": None,
        "tree": None,
    }
    if not _check_home(paths, create=False):
        return result
    found = inspect(paths)
    if found.state == "missing":
        if lock_held(paths.lock):
            # It holds the lock but has not published its descriptor yet.
            result["status"] = "starting"
            result["pid"] = read_holder(paths.lock)
        return result
    if found.state == "malformed":
        result["status"] = "stale"
        result["error"] = found.error
        return result
    descriptor = found.descriptor
    assert descriptor is not None
    result["pid"] = descriptor.pid
    result["socket_path"] = descriptor.socket_path
    result["daemon_version"] = descriptor.daemon_version
    if descriptor.transport == "tcp":
        result["transport"] = "tcp"
        result["address"] = descriptor.address
    if found.state == "stale":
        result["status"] = "stale"
        return result
    try:
        health = call(descriptor, "system.health", timeout=timeout)
    except FileNotFoundError as exc:
        # Alive, with its socket gone: it is shutting down (it removes the
        # socket first), unless it vanished meanwhile.
        again = inspect(paths)
        result["status"] = "stopping" if again.state == "alive" else "stopped"
        if again.state == "alive":
            result["error"] = f"the daemon is stopping ({exc.strerror or exc})"
        return result
    except (OSError, RPCError, ValueError) as exc:
        result["status"] = "unresponsive"
        result["error"] = str(exc) or type(exc).__name__
        return result
    result["status"] = "running"
    if isinstance(health, dict):
        result["uptime_s"] = health.get("uptime_s")
        result["tree"] = health.get("tree")
        result["health"] = health.get("status")
    return result


def call_daemon(
    paths: DaemonPaths, method: str, params: Any = None, *, timeout: float = 5.0
) -> Any:
    """Call `method` on the running daemon of `paths` and return its result.

    For commands that act on a running daemon (``mcp ps``, ``mcp restart``):
    nothing is started. Raises :class:`DaemonError` with a one-line reason
    when no daemon runs, it does not answer, or it answers with an error.
    """
    if not _check_home(paths, create=False):
        raise DaemonError(
            f"no daemon is running for {paths.home}; start it: bicameral daemon start"
        )
    found = inspect(paths)
    if found.state != "alive" or found.descriptor is None:
        raise DaemonError(
            f"no daemon is running for {paths.home}; start it: bicameral daemon start"
        )
    return _call_or_explain(found.descriptor, method, params, timeout)


def _call_or_explain(descriptor: Descriptor, method: str, params: Any, timeout: float) -> Any:
    """`call`, with its failures as one-line :class:`DaemonError`s."""
    try:
        return call(descriptor, method, params, timeout=timeout)
    except RPCError as exc:
        raise DaemonError(exc.message) from None
    except OSError as exc:
        raise DaemonError(
            f"daemon pid {descriptor.pid} is not answering: {exc or type(exc).__name__}"
        ) from None


# --- reload ------------------------------------------------------------------------


def reload(paths: DaemonPaths, *, timeout: float = 30.0) -> dict[str, Any]:
    """Ask the running daemon to re-read its configuration (``system.reload``).

    Returns ``{"status": "reloaded", "pid", "added", "removed", "restarted"}``,
    or ``{"status": "stopped"}`` / ``{"status": "stale", "pid"}`` when no daemon
    answers for ``paths``. An invalid configuration raises
    :class:`DaemonError` with the daemon's reason; the daemon keeps its tree as
    it was. Over RPC rather than SIGHUP, so the caller learns the outcome and
    works on every platform.
    """
    if not _check_home(paths, create=False):
        return {"status": "stopped"}
    found = inspect(paths)
    if found.state == "missing":
        return {"status": "stopped"}
    if found.state != "alive" or found.descriptor is None:
        pid = found.descriptor.pid if found.descriptor is not None else None
        return {"status": "stale", "pid": pid}
    result = _call_or_explain(found.descriptor, "system.reload", None, timeout)
    return {"status": "reloaded", "pid": found.descriptor.pid, **result}


# --- restart ----------------------------------------------------------------------


def restart(
    paths: DaemonPaths,
    *,
    wait: float = 10.0,
    timeout: float = 10.0,
    transport: str | None = None,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Stop (if running) and start; start's object with ``previous_pid``.

    Without ``transport`` the new daemon keeps the transport of the old one.
    """
    if transport is None and _check_home(paths, create=False):
        previous_descriptor = inspect(paths).descriptor
        if previous_descriptor is not None:
            transport = previous_descriptor.transport
    stopped = stop(paths, timeout=timeout)
    previous = stopped.get("pid") if not stopped.get("stale") else None
    result = start(paths, wait=wait, transport=transport, python=python, env=env, options=options)
    result["status"] = "started"
    result["previous_pid"] = previous
    return result
