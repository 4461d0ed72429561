"""The client side: stop, inspect, reload, restart a daemon from another process.

This module (with :mod:`._start` and :mod:`._inspect`) is what ``bicameral
daemon start|stop|status`` run, on the CLI's fast path, so it imports only
the standard library (and the protocol's blocking client): no trio, anyio,
typer or psutil. The results are plain dicts, exactly the JSON objects of
SPEC §5, so the CLI only prints them.

The rules it keeps (SPEC §5, §6):

- ``start`` (:mod:`._start`): the lock decides who spawns, readiness comes
  down a pipe, a failed start leaves nothing behind.
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
import time

from bicameral.daemon._descriptor import Descriptor
from bicameral.daemon._errors import DaemonError
from bicameral.daemon._identity import ProcessHandle
from bicameral.daemon._inspect import KILL_WAIT, Inspection, call, check_home, clean_stale, inspect
from bicameral.daemon._lock import lock_held, read_holder
from bicameral.daemon._start import start
from bicameral.platform import (
    default_transport,
    stop_uses_rpc,
)
from bicameral.protocol import RPCError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from bicameral.daemon._paths import DaemonPaths

__all__ = [
    "STATUS_EXIT_CODES",
    "call_daemon",
    "default_transport",
    "reload",
    "restart",
    "status",
    "stop",
]

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
    if not check_home(paths, create=False):
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
        clean_stale(paths, found)
        return {"status": "stopped", "stale": True, "pid": None}
    descriptor = found.descriptor
    assert descriptor is not None
    handle = (
        ProcessHandle.open(descriptor.pid, descriptor.process_start_time, descriptor.socket_path)
        if found.state == "alive"
        else None
    )
    if handle is None:
        clean_stale(paths, Inspection("stale", descriptor))
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
        clean_stale(paths, Inspection("stale", descriptor))
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
    if not check_home(paths, create=False):
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
    if not check_home(paths, create=False):
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
    if not check_home(paths, create=False):
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
    if transport is None and check_home(paths, create=False):
        previous_descriptor = inspect(paths).descriptor
        if previous_descriptor is not None:
            transport = previous_descriptor.transport
    stopped = stop(paths, timeout=timeout)
    previous = stopped.get("pid") if not stopped.get("stale") else None
    result = start(paths, wait=wait, transport=transport, python=python, env=env, options=options)
    result["status"] = "started"
    result["previous_pid"] = previous
    return result
