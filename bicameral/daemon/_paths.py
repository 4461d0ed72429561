"""Where the daemon keeps its files, and the checks that make them safe to use.

The state directory (``~/.bicameral``, ``$BICAMERAL_HOME`` or ``--home``) holds
the socket, the descriptor, the lock, the log and ``config.toml``. Everything
in it is private to the user: the directory is created 0700 and a directory
that another user owns, or that group or others can write, is refused, because
whoever can write there can replace the descriptor and make ``stop`` signal a
process of their choosing.

File names derive from the descriptor, so ``--descriptor /x/other.json``
gives a whole second set (``other.json.lock``, ``other.sock``, ``other.log``)
and two daemons never share a lock or a socket by accident:

=================  ==========================  ===============================
file               default                     with ``--descriptor D``
=================  ==========================  ===============================
descriptor         ``daemon.json``             ``D``
lock               ``daemon.lock``             ``D.lock`` (SPEC §4)
socket             ``daemon.sock``             ``D`` with ``.sock`` for ``.json``
log                ``daemon.log``              ``D`` with ``.log`` for ``.json``
=================  ==========================  ===============================

AF_UNIX paths are limited to 107 bytes on Linux and 103 on macOS. A longer
socket path does not fail with an obscure ``bind`` error: the daemon binds a
short fallback instead (:func:`fallback_socket_path`) and records the real
path in the descriptor, which is where every client looks it up; should even
the fallback be too long, the error says so and what to do.

The default state directory is ``~/.bicameral``, ``%LOCALAPPDATA%\\bicameral``
on Windows (`bicameral.platform.default_home`); there a new one gets an ACL
granting this user alone access, in place of mode 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bicameral.daemon._errors import DaemonError
from bicameral.platform import (
    CURRENT,
    Platform,
    checks_mode_bits,
    current_uid,
    default_home,
    restrict_to_user,
    socket_path_limit,
    socket_path_problem,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DaemonPaths",
    "check_private_dir",
    "check_trusted_path",
    "effective_socket_path",
    "environment_fallback_socket_path",
    "fallback_socket_path",
    "resolve_paths",
    "unwritable_dir",
]

DEFAULT_HOME_NAME = ".bicameral"
DESCRIPTOR_NAME = "daemon.json"


class DaemonPaths:
    """The resolved, absolute paths of one daemon's files.

    ``socket`` is the path asked for; the daemon may bind a shorter fallback
    (:func:`effective_socket_path`), and clients always use the path the
    descriptor records.
    """

    __slots__ = ("config", "config_explicit", "descriptor", "home", "lock", "log", "socket")

    def __init__(
        self,
        *,
        home: Path,
        descriptor: Path,
        lock: Path,
        socket: Path,
        log: Path,
        config: Path,
        config_explicit: bool,
    ) -> None:
        self.home = home
        self.descriptor = descriptor
        self.lock = lock
        self.socket = socket
        self.log = log
        self.config = config
        self.config_explicit = config_explicit

    def __repr__(self) -> str:
        return (
            f"DaemonPaths(home={self.home!s}, descriptor={self.descriptor!s}, "
            f"socket={self.socket!s}, lock={self.lock!s}, log={self.log!s}, "
            f"config={self.config!s})"
        )

    def private_dirs(self) -> list[Path]:
        """The directories that must be private: the home and the descriptor's."""
        dirs = [self.home]
        if self.descriptor.parent != self.home:
            dirs.append(self.descriptor.parent)
        return dirs


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _sibling(descriptor: Path, suffix: str) -> Path:
    """``D`` with ``suffix`` replacing ``.json``, or appended when there is none."""
    if descriptor.suffix == ".json":
        return descriptor.with_suffix(suffix)
    return descriptor.with_name(descriptor.name + suffix)


def resolve_paths(
    home: str | os.PathLike[str] | None = None,
    *,
    descriptor: str | os.PathLike[str] | None = None,
    socket: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DaemonPaths:
    """Resolve every path from the options, ``$BICAMERAL_HOME`` and the defaults.

    Pure: nothing is created or checked here (see :func:`check_private_dir`).
    An empty ``--home ""`` or ``BICAMERAL_HOME=`` is a :class:`DaemonError`,
    not the current directory (an unset variable in a script must not put
    a daemon's state, socket and log wherever the script happens to run).
    """
    env = os.environ if environ is None else environ
    if home is not None and not os.fspath(home):
        raise DaemonError('--home "" is empty: give a directory, or leave the option out')
    if home:
        home_path = _absolute(home)
    elif "BICAMERAL_HOME" in env:
        if not env["BICAMERAL_HOME"]:
            raise DaemonError("BICAMERAL_HOME is set but empty: give it a directory, or unset it")
        home_path = _absolute(env["BICAMERAL_HOME"])
    else:
        home_path = _absolute(default_home())
    default_descriptor = home_path / DESCRIPTOR_NAME
    descriptor_path = _absolute(descriptor) if descriptor else default_descriptor
    if descriptor_path == default_descriptor:
        lock_path = home_path / "daemon.lock"
    else:
        lock_path = descriptor_path.with_name(descriptor_path.name + ".lock")
    return DaemonPaths(
        home=home_path,
        descriptor=descriptor_path,
        lock=lock_path,
        socket=_absolute(socket) if socket else _sibling(descriptor_path, ".sock"),
        log=_sibling(descriptor_path, ".log"),
        config=_absolute(config) if config else home_path / "config.toml",
        config_explicit=bool(config),
    )


#: Symlinks followed while checking one path, as the kernel's own limit.
_MAX_LINKS = 40


def check_trusted_path(path: Path, what: str = "state directory") -> None:
    """Refuse `path` when another user could redirect it, as OpenSSH's StrictModes does.

    Every directory on the way to `path`, and every symlink met (its target
    checked the same way), must belong to root or to this user and not be
    writable by group or others, except a world-writable directory with the
    sticky bit (``/tmp``): there only a name's owner can rename or replace
    it, so the next component, checked in turn, decides. Components that do
    not exist yet end the walk (they will be created by this user, 0700).

    Without this, a user who owns a directory above the state dir could
    rename it and put their own in its place, with a ``config.toml`` whose
    command the daemon would run on its next reload.

    Raises :class:`DaemonError` naming the component and the owner.
    """
    uid = current_uid()
    if uid is None or not checks_mode_bits():  # Windows: ACLs, not mode bits
        return
    trusted = {0, uid}
    pending = list(Path(os.path.abspath(path)).parts[1:])
    current = Path("/")
    links = 0

    def check(node: Path, st: os.stat_result, *, is_link: bool) -> None:
        if st.st_uid not in trusted:
            kind = "symlink" if is_link else "directory"
            raise DaemonError(
                f"{what} {path} is reached through {kind} {node}, owned by uid {st.st_uid} "
                f"(not you or root), who could redirect it; use a path only you control"
            )
        mode = st.st_mode
        if not is_link and mode & 0o022 and not mode & stat.S_ISVTX:
            raise DaemonError(
                f"{what} {path} is reached through {node}, writable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}) without the sticky bit; "
                f"use another path, or run: chmod go-w {node}"
            )

    try:
        check(current, os.lstat(current), is_link=False)
    except OSError:
        return
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        node = current / name
        try:
            st = os.lstat(node)
        except OSError:
            return  # missing (created by us later) or unreachable (reported by the caller)
        if stat.S_ISLNK(st.st_mode):
            check(node, st, is_link=True)
            links += 1
            if links > _MAX_LINKS:
                raise DaemonError(f"{what} {path}: too many levels of symbolic links")
            target = Path(os.readlink(node))
            if target.is_absolute():
                current = Path("/")
            pending[:0] = list(target.parts[1:] if target.is_absolute() else target.parts)
            continue
        if not stat.S_ISDIR(st.st_mode):
            return  # "not a directory": the caller's own checks say so
        if pending:  # the state dir itself gets the stricter checks below
            check(node, st, is_link=False)
        current = node


def check_private_dir(path: Path, *, create: bool = True, what: str = "state directory") -> None:
    """Make sure ``path`` is a directory only this user can write, creating it 0700.

    Raises :class:`DaemonError` with a one-line message naming the directory
    and the fix when it is not a directory, belongs to another user, or is
    writable by group or others, or is reached through a directory or
    symlink another user controls (`check_trusted_path`). On Windows only the
    first check applies (its permissions are ACLs, not mode bits).
    """
    check_trusted_path(path, what)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise DaemonError(f"{what} {path} does not exist") from None
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            if not checks_mode_bits():
                restrict_to_user(path)  # an ACL for this user alone, in place of 0700
        except OSError as exc:
            raise DaemonError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
        st = os.stat(path)
    except NotADirectoryError:
        raise DaemonError(f"{what} {path} is not a directory (a parent is a file)") from None
    except OSError as exc:
        raise DaemonError(f"cannot use {what} {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DaemonError(f"{what} {path} is not a directory")
    uid = current_uid()
    if uid is None or not checks_mode_bits():
        return
    if st.st_uid != uid:
        raise DaemonError(
            f"{what} {path} is owned by uid {st.st_uid}, not by you (uid {uid}); "
            "use your own directory (--home or BICAMERAL_HOME)"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise DaemonError(
            f"{what} {path} is writable by group or others (mode {mode:04o}); "
            f"run: chmod go-w {path}"
        )


def unwritable_dir(path: Path, what: str = "state directory") -> str | None:
    """Why the daemon could not make its files in `path`, with the fix; None when it can.

    Root ignores mode bits but not an immutable flag or a read-only mount,
    which `os.access` sees (as the kernel's permission check does).
    """
    if not checks_mode_bits() or os.access(path, os.W_OK | os.X_OK):
        return None
    return (
        f"{what} {path} is not writable, so the daemon cannot make its lock, socket and log "
        f"there; make it writable (chmod u+rwx {path}; `lsattr -d {path}` shows an immutable "
        "flag), or use another directory: --home DIR or BICAMERAL_HOME=DIR"
    )


def fallback_socket_path(
    requested: Path, *, runtime_dir: str | None, uid: int, platform: Platform = CURRENT
) -> Path:
    """A short socket path standing in for ``requested``, which is too long.

    It lives in ``$XDG_RUNTIME_DIR/bicameral/`` when that is set (per-user,
    0700, cleaned at logout: what it is for) and in ``/tmp/bicameral-<uid>/``
    otherwise; the caller checks the directory like the state dir, so one that
    another user planted is refused. The name is a hash of the requested path,
    not of the state dir, so two descriptors in one state dir still get two
    sockets, and the same request always maps to the same fallback.
    """
    import hashlib

    digest = hashlib.sha256(os.fsencode(requested)).hexdigest()[:20]
    base = Path(runtime_dir) / "bicameral" if runtime_dir else Path(f"/tmp/bicameral-{uid}")
    path = base / f"{digest}.sock"
    limit = socket_path_limit(platform)
    if limit is not None and len(os.fsencode(path)) > limit:
        # Only an absurdly long $XDG_RUNTIME_DIR gets here.
        path = Path(f"/tmp/bicameral-{uid}") / f"{digest}.sock"
    return path


def effective_socket_path(
    requested: Path,
    *,
    platform: Platform = CURRENT,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The path the daemon binds: ``requested``, or its fallback if too long.

    The fallback's directory is created (0700) and checked here.
    """
    limit = socket_path_limit(platform)
    if limit is None or len(os.fsencode(requested)) <= limit:
        return requested
    path = environment_fallback_socket_path(requested, platform=platform, environ=environ)
    problem = socket_path_problem(path, platform)
    if problem is not None:  # only an absurdly long $XDG_RUNTIME_DIR or /tmp
        raise DaemonError(
            f"the socket path {requested} is too long, and so is its fallback: {problem}"
        )
    check_private_dir(path.parent, what="socket directory")
    return path


def environment_fallback_socket_path(
    requested: Path,
    *,
    platform: Platform = CURRENT,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """:func:`fallback_socket_path` for this process: an absolute $XDG_RUNTIME_DIR, our uid."""
    env = os.environ if environ is None else environ
    runtime_dir = env.get("XDG_RUNTIME_DIR") or None
    if runtime_dir is not None and not os.path.isabs(runtime_dir):
        runtime_dir = None
    return fallback_socket_path(
        requested, runtime_dir=runtime_dir, uid=current_uid() or 0, platform=platform
    )
