"""``bicameral doctor``, the daemon's half: is this state dir fit for a daemon?

Each check returns :class:`Check` objects (a name, ``ok`` / ``warning`` /
``problem``, what was found, and how to fix it) and never raises: a doctor
that crashes on the broken setup it was run to explain is no use.
:func:`run_checks` wraps every check so that even a bug in one becomes a
``problem`` naming it, and the others still run.

Like the client side (:mod:`._control`), this imports only the standard
library and the protocol's blocking client, and it changes nothing: it
creates no directory, takes no lock for longer than a probe, and removes no
stale file (it says which command does).

The checks, in order:

- ``state-dir``: the state directory (and the descriptor's, when
  ``--descriptor`` puts it elsewhere) is a directory you own, not writable by
  group or others (the daemon refuses it otherwise), ideally mode 0700.
- ``socket-path``: the socket path fits AF_UNIX's limit; if not, which short
  fallback the daemon binds instead, and whether that fallback is usable.
- ``descriptor``: no descriptor, one naming the running daemon, or a stale one
  (its pid dead, a zombie, or reused by another process).
- ``lock``: a lock file that no process holds is normal (it is never deleted);
  one held while no descriptor names a running daemon means a daemon is
  starting or stuck.
- ``daemon``: a running daemon answers ``system.health``; adapters that are
  not running are listed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from bicameral.daemon._paths import unwritable_dir
from bicameral.platform import (
    CURRENT,
    Platform,
    can_lock_directories,
    checks_mode_bits,
    current_uid,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path
    from typing import Any

    from bicameral.daemon._descriptor import Descriptor
    from bicameral.daemon._inspect import Inspection
    from bicameral.daemon._paths import DaemonPaths

__all__ = [
    "OK",
    "PROBLEM",
    "WARNING",
    "Check",
    "check_daemon",
    "check_descriptor",
    "check_lock",
    "check_socket_path",
    "check_state_dir",
    "daemon_checks",
    "daemon_environ",
    "run_checks",
]

OK = "ok"
WARNING = "warning"
PROBLEM = "problem"


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    ``name`` is a stable identifier (``state-dir``, ``mcp-server:files``...)
    that scripts can match; ``status`` is :data:`OK`, :data:`WARNING` or
    :data:`PROBLEM`; ``message`` says what was found, in one line; ``fix``
    says what to do about it (``None`` when there is nothing to do).
    """

    name: str
    status: str
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}


def run_checks(checks: Iterable[tuple[str, Callable[[], list[Check]]]]) -> list[Check]:
    """Run each ``(name, check)``; an exception becomes a problem naming the check."""
    results: list[Check] = []
    for name, check in checks:
        try:
            results.extend(check())
        except Exception as exc:
            results.append(
                Check(
                    name,
                    PROBLEM,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "please report this as a bicameral bug",
                )
            )
    return results


# --- state dir ----------------------------------------------------------------------


def _check_dir(name: str, path: Path, what: str) -> Check:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(name, OK, f"{what} {path} does not exist yet; the first start creates it 0700")
    except NotADirectoryError:
        return Check(
            name,
            PROBLEM,
            f"{what} {path} cannot exist: a parent of it is a file",
            "use another directory (--home or BICAMERAL_HOME)",
        )
    except OSError as exc:
        return Check(
            name, PROBLEM, f"cannot use {what} {path}: {exc.strerror}", f"check access to {path}"
        )
    if not stat.S_ISDIR(st.st_mode):
        return Check(
            name,
            PROBLEM,
            f"{what} {path} is not a directory",
            f"move the file away (mv {path} {path}.bak) or use another --home",
        )
    uid = current_uid()
    if uid is None or not checks_mode_bits():  # Windows: ACLs, not mode bits
        return Check(name, OK, f"{what} {path} is a directory")
    if st.st_uid != uid:
        return Check(
            name,
            PROBLEM,
            f"{what} {path} is owned by uid {st.st_uid}, not by you (uid {uid}); "
            "the daemon refuses it",
            "use your own directory (--home or BICAMERAL_HOME)",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return Check(
            name,
            PROBLEM,
            f"{what} {path} is writable by group or others (mode {mode:04o}); "
            "the daemon refuses it, since whoever can write there can redirect `daemon stop`",
            f"chmod 700 {path}",
        )
    unwritable = unwritable_dir(path, what)
    if unwritable is not None:
        message, _, fix = unwritable.partition("; ")
        return Check(name, PROBLEM, message, fix)
    if mode & 0o077:
        return Check(
            name,
            WARNING,
            f"{what} {path} is readable by group or others (mode {mode:04o}); "
            "config.toml may hold secrets",
            f"chmod 700 {path}",
        )
    return Check(name, OK, f"{what} {path} (mode {mode:04o}, yours)")


def check_state_dir(paths: DaemonPaths) -> list[Check]:
    """The state directory, and the descriptor's directory if it is another one."""
    checks = [_check_dir("state-dir", paths.home, "state directory")]
    if paths.descriptor.parent != paths.home:
        checks.append(_check_dir("descriptor-dir", paths.descriptor.parent, "descriptor directory"))
    return checks


# --- socket path ----------------------------------------------------------------------


def check_socket_path(
    paths: DaemonPaths,
    *,
    environ: Mapping[str, str] | None = None,
    platform: Platform = CURRENT,
) -> list[Check]:
    """Whether the socket path fits AF_UNIX, and the fallback the daemon would use."""
    from bicameral.daemon._paths import environment_fallback_socket_path
    from bicameral.platform import socket_path_limit

    limit = socket_path_limit(platform)
    if limit is None:
        return [Check("socket-path", OK, "no AF_UNIX here: the daemon uses loopback TCP")]
    requested = paths.socket
    length = len(os.fsencode(requested))
    if length <= limit:
        return [Check("socket-path", OK, f"{requested} ({length} bytes, limit {limit})")]
    fallback = environment_fallback_socket_path(requested, platform=platform, environ=environ)
    shorter = "use a shorter state dir (--home or BICAMERAL_HOME) or --socket"
    directory = _check_dir("socket-path", fallback.parent, "socket directory")
    if directory.status == PROBLEM:
        return [
            Check(
                "socket-path",
                PROBLEM,
                f"socket path {requested} is {length} bytes, over the AF_UNIX limit of {limit}, "
                f"and its fallback cannot be used: {directory.message}",
                shorter,
            )
        ]
    return [
        Check(
            "socket-path",
            WARNING,
            f"socket path {requested} is {length} bytes, over the AF_UNIX limit of {limit}; "
            f"the daemon binds the fallback {fallback} instead (clients find it in the "
            "descriptor, but other tools that expect the path may not)",
            shorter,
        )
    ]


# --- descriptor and lock -------------------------------------------------------------------


def _why_stale(descriptor: Descriptor) -> str:
    from bicameral.daemon._identity import mismatch, probe

    pid = descriptor.pid
    why = mismatch(probe(pid), descriptor.process_start_time, descriptor.socket_path)
    return f"pid {pid} {why or 'does not match'}"  # (None: raced with a start)


def _inspected(paths: DaemonPaths, found: Inspection | None) -> Inspection:
    from bicameral.daemon._inspect import inspect

    return found if found is not None else inspect(paths)


def check_descriptor(paths: DaemonPaths, found: Inspection | None = None) -> list[Check]:
    """No descriptor, a live one, or a stale or unreadable one.

    ``found``: the descriptor as already inspected for this report, if it was.
    """
    found = _inspected(paths, found)
    cleanup = "run `bicameral daemon stop` to remove it (or `daemon start`, which replaces it)"
    if found.state == "missing":
        return [Check("descriptor", OK, f"no descriptor at {paths.descriptor} (no daemon running)")]
    if found.state == "malformed":
        return [
            Check(
                "descriptor",
                WARNING,
                f"descriptor {paths.descriptor} is unreadable ({found.error}); it reads as stale",
                cleanup,
            )
        ]
    descriptor = found.descriptor
    assert descriptor is not None
    if found.state == "stale":
        why = _why_stale(descriptor)
        leftover = ""
        if descriptor.socket_path and os.path.lexists(descriptor.socket_path):
            leftover = f"; its socket {descriptor.socket_path} is left over too"
        return [
            Check(
                "descriptor",
                WARNING,
                f"stale descriptor {paths.descriptor}: {why}, so no daemon answers there{leftover}",
                cleanup,
            )
        ]
    return [Check("descriptor", OK, f"{paths.descriptor} names daemon pid {descriptor.pid}")]


def lock_file_held(path: Path) -> bool | None:
    """Whether some process holds ``path``'s lock; ``None`` if there is no lock file.

    Probed with a shared, non-blocking ``flock`` released at once
    (`bicameral.platform.flock`): it fails only against the daemon's
    exclusive lock. The file is not created and the holder pid it records
    is left as it is. ``None`` on Windows, which has no such probe.
    """
    if not can_lock_directories():  # Windows: no shared lock to probe with
        return None
    from bicameral.daemon._lock import flock

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        return not flock(fd, shared=True)
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it


def check_lock(paths: DaemonPaths, found: Inspection | None = None) -> list[Check]:
    """A free lock is fine; a held one with no running daemon is worth a look."""
    from bicameral.daemon._identity import probe
    from bicameral.daemon._lock import read_holder

    try:
        held = lock_file_held(paths.lock)
    except OSError as exc:
        return [
            Check(
                "lock",
                PROBLEM,
                f"cannot open lock file {paths.lock}: {exc.strerror}",
                f"check its owner and mode: ls -l {paths.lock}",
            )
        ]
    if held is None:
        return [Check("lock", OK, f"no lock file yet ({paths.lock} is created by the first start)")]
    if not held:
        return [
            Check(
                "lock",
                OK,
                f"{paths.lock} is held by no process: that is fine, the file is kept on "
                "purpose (deleting it would let two daemons start at once)",
            )
        ]
    found = _inspected(paths, found)
    holder = read_holder(paths.lock)
    if found.state == "alive" and found.descriptor is not None:
        return [Check("lock", OK, f"{paths.lock} is held by daemon pid {found.descriptor.pid}")]
    who = f"pid {holder}" if holder is not None else "a process"
    alive = holder is not None and probe(holder) is not None
    return [
        Check(
            "lock",
            WARNING,
            f"{paths.lock} is held by {who} but no descriptor names a running daemon: "
            "a daemon is starting, or is stuck before it became ready",
            f"rerun in a few seconds; if it persists, see {paths.log}"
            + (f" and stop it: kill {holder}" if alive else ""),
        )
    ]


# --- the running daemon -----------------------------------------------------------------------


def _unhealthy(entry: Mapping[str, Any], path: str = "") -> list[str]:
    """``"adapters/files: failed (last error: ...)"`` for every entry not running."""
    here = f"{path}/{entry.get('name', '?')}" if path else str(entry.get("name", "?"))
    own = entry.get("started_value")
    if isinstance(own, dict) and "health" in own and "state" in own:
        # An entry that reports its own health (an MCP server's subtree: its
        # server's live state) is judged by it, at its own level: "starting"
        # or "restarting" says more than its inner children's states.
        if own["health"] == "ok":
            return []
        detail = f"{here}: {own['state']}"
        if own.get("last_error"):
            detail += f" (last error: {own['last_error']})"
        return [detail]
    found: list[str] = []
    children = entry.get("children")
    if isinstance(children, list) and children:
        for child in children:
            if isinstance(child, dict):
                found.extend(_unhealthy(child, here))
    if entry.get("state") != "running" and not found:
        detail = f"{here}: {entry.get('state', '?')}"
        last = entry.get("last_exit")
        # An adapter may report its own last error in its started value.
        if isinstance(own, dict) and own.get("last_error"):
            detail += f" (last error: {own['last_error']})"
        elif isinstance(last, dict) and last.get("error"):
            detail += f" (last error: {last['error']})"
        found.append(detail)
    return found


def _unhealthy_children(tree: Mapping[str, Any]) -> list[str]:
    """:func:`_unhealthy` below the root, whose name adds nothing."""
    children = tree.get("children")
    if not isinstance(children, list) or not children:
        return _unhealthy(tree)
    found: list[str] = []
    for child in children:
        if isinstance(child, dict):
            found.extend(_unhealthy(child))
    return found or ([] if tree.get("state") == "running" else _unhealthy(tree))


def check_daemon(
    paths: DaemonPaths, found: Inspection | None = None, *, timeout: float = 2.0
) -> list[Check]:
    """Whether a daemon runs, answers ``system.health``, and how its tree is."""
    import bicameral
    from bicameral.daemon._inspect import call
    from bicameral.protocol import RPCError

    found = _inspected(paths, found)
    if found.state != "alive" or found.descriptor is None:
        return [
            Check(
                "daemon",
                OK,
                "not running (`bicameral daemon start` starts it; `bicameral mcp` starts it "
                "on demand)",
            )
        ]
    descriptor = found.descriptor
    log = descriptor.log_path or str(paths.log)
    try:
        health = call(descriptor, "system.health", timeout=timeout)
    except (OSError, RPCError, ValueError) as exc:
        return [
            Check(
                "daemon",
                PROBLEM,
                f"daemon pid {descriptor.pid} is running but not answering: "
                f"{exc or type(exc).__name__}",
                f"run `bicameral daemon restart` (log: {log})",
            )
        ]
    checks: list[Check] = []
    where = f"tcp {descriptor.address}" if descriptor.transport == "tcp" else descriptor.socket_path
    status = health.get("status") if isinstance(health, dict) else None
    tree = health.get("tree") if isinstance(health, dict) else None
    uptime = health.get("uptime_s") if isinstance(health, dict) else None
    summary = f"daemon pid {descriptor.pid} answers on {where} (up {uptime} s)"
    if status == "ok":
        checks.append(Check("daemon", OK, f"{summary}; every child is running"))
    else:
        bad = _unhealthy_children(tree) if isinstance(tree, dict) else []
        checks.append(
            Check(
                "daemon",
                WARNING,
                f"{summary} but is {status or 'in an unknown state'}: "
                + ("; ".join(bad) if bad else "see `bicameral daemon status`"),
                f"see `bicameral daemon status` and {log}; "
                "`bicameral daemon reload` after fixing config.toml",
            )
        )
    if descriptor.daemon_version != bicameral.__version__:
        checks.append(
            Check(
                "daemon-version",
                WARNING,
                f"the daemon runs bicameral {descriptor.daemon_version}, this command is "
                f"{bicameral.__version__}",
                "run `bicameral daemon restart` to run the installed version",
            )
        )
    return checks


def daemon_environ(paths: DaemonPaths) -> dict[str, str] | None:
    """The running daemon's environment (same user; ``/proc`` or psutil), or ``None``.

    MCP servers inherit it, so their commands are looked up on *its* ``PATH``,
    which may not be the one of the shell running the doctor.
    """
    from bicameral.daemon._inspect import inspect

    found = inspect(paths)
    if found.state != "alive" or found.descriptor is None:
        return None
    from bicameral.platform import process_environ

    return process_environ(found.descriptor.pid)


def daemon_checks(paths: DaemonPaths) -> list[Check]:
    """Every daemon-level check, in the order they are shown.

    The descriptor is read and its process probed once, on first use, so the
    three checks that look at it report on one and the same moment.
    """
    import functools

    from bicameral.daemon._inspect import inspect

    found = functools.cache(lambda: inspect(paths))
    return run_checks(
        [
            ("state-dir", lambda: check_state_dir(paths)),
            ("socket-path", lambda: check_socket_path(paths)),
            ("descriptor", lambda: check_descriptor(paths, found())),
            ("lock", lambda: check_lock(paths, found())),
            ("daemon", lambda: check_daemon(paths, found())),
        ]
    )
