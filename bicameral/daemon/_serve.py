"""``serve``: the daemon process itself.

One Trio program, one supervisor tree (the running daemon: :mod:`._daemon`).
The life of the process, in order, and why:

1. Signal handlers that raise :class:`StopRequested`, logging. (No global
   ``umask``: the MCP servers the daemon runs inherit it, and the files they
   write for the user are not ours to make private. Each file of ours gets
   its mode explicitly instead.)
2. The lock (inherited from ``start``, or taken here): a second daemon for
   the same descriptor stops now, before it touches anything.
3. ``config.toml`` (its ``[daemon.limits]``, then the plugins' parts): an
   invalid file or a plugin that does not load is reported (readiness pipe,
   log, stderr) before anything is bound.
4. The tree starts; every child is ready when ``nursery.start`` returns, so
   the socket is bound and answering.
5. Only then the descriptor is published (atomically), then ``READY`` goes to
   ``start`` and to systemd. A client that finds the descriptor can connect.
6. Wait for a stop request: a signal, ``system.shutdown``, or a crash of the
   tree (the root gave up). A graceful stop stops the children in reverse
   order with their graces; a second signal cancels everything at once.
7. Whatever happened: the descriptor (if it still names us) and the socket
   (if it is still the one we bound) are removed, then the lock is released.
   Exit 0 after a requested stop, 1 after a crash or a failed start.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from typing import TYPE_CHECKING, Any

import trio

from bicameral.daemon._audit import audit_from_config
from bicameral.daemon._daemon import RunningDaemon
from bicameral.daemon._errors import DaemonError
from bicameral.daemon._fds import fd_table
from bicameral.daemon._files import sweep_temporaries
from bicameral.daemon._http import TOKEN_ENV, http_from_config
from bicameral.daemon._lock import LOCK_FD_ENV, LockFile, read_holder
from bicameral.daemon._logging import setup_logging
from bicameral.daemon._options import LOG_FORMATS, env_default
from bicameral.daemon._paths import check_private_dir, effective_socket_path
from bicameral.daemon._plugin import load_config_file, load_plugins
from bicameral.daemon._readiness import Notifier
from bicameral.daemon._settings import limits_from_config
from bicameral.daemon._signals import (
    StopRequested,
    install_process_handlers,
    quiet_process_handlers,
    signal_name,
    take_early_stop,
)
from bicameral.daemon._store import STORE_ENV, store_from_config
from bicameral.platform import start_reaper
from bicameral.protocol import (
    Limits,
)
from bicameral.supervisor import ChildStartError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bicameral.daemon._paths import DaemonPaths

__all__ = ["ServeOptions", "run_serve", "serve"]

logger = logging.getLogger("bicameral.daemon")


class ServeOptions:
    """What ``serve`` was asked to do (from the CLI or ``python -m bicameral.daemon``)."""

    def __init__(
        self,
        paths: DaemonPaths,
        *,
        transport: str = "unix",
        detached: bool = False,
        limits: Limits | None = None,
        log_format: str | None = None,
        log_level: str | None = None,
        http: str | None = None,
    ) -> None:
        self.paths = paths
        self.transport = transport
        self.detached = detached
        self.limits = limits if limits is not None else Limits()
        # Checked by `serve`, which can report it through the readiness pipe.
        self.log_format = log_format or env_default("log-format") or "text"
        #: The least severe records logged (an unknown one: ``info``).
        self.log_level = log_level or env_default("log-level") or "info"
        #: ``HOST:PORT`` for the HTTP listener over config.toml's (``--http``).
        self.http = http or None
        #: The listener's token from ``$BICAMERAL_HTTP_TOKEN``, taken out of the
        #: environment here so no MCP server the daemon starts inherits it.
        self.http_token = os.environ.pop(TOKEN_ENV, None) or None
        #: ``$BICAMERAL_STORE_URL`` (it may hold a password), taken out likewise.
        self.store_url = os.environ.pop(STORE_ENV, None) or None


def run_serve(values: Mapping[str, Any]) -> int:
    """``daemon serve`` with the options table's values (`bicameral.daemon._options`)."""
    from bicameral.daemon._paths import resolve_paths
    from bicameral.platform import default_transport

    paths = resolve_paths(
        values.get("home"),
        descriptor=values.get("descriptor"),
        socket=values.get("socket"),
        config=values.get("config"),
    )
    options = ServeOptions(
        paths,
        transport=values.get("transport") or default_transport(),
        detached=bool(values.get("detached")),
        log_format=values.get("log-format"),
        log_level=values.get("log-level"),
        http=values.get("http"),
    )
    return serve(options)


# --- the process ----------------------------------------------------------------


def serve(options: ServeOptions) -> int:
    """Run the daemon in this process until it is stopped; return the exit code."""
    install_process_handlers()
    notifier = Notifier.from_environ()
    inherited_lock = os.environ.pop(LOCK_FD_ENV, None)
    if options.log_format not in LOG_FORMATS:
        message = (
            f"log format must be one of {', '.join(LOG_FORMATS)}, not {options.log_format!r} "
            "(--log-format or $BICAMERAL_LOG_FORMAT)"
        )
        notifier.error(message)
        sys.stderr.write(f"bicameral: {message}\n")
        return 2
    log_handler = setup_logging(
        options.log_level, options.log_format, options.paths.log if options.detached else None
    )
    paths = options.paths
    daemon = RunningDaemon(options, notifier)
    lock: LockFile | None = None
    try:
        try:
            early = take_early_stop()  # during the imports, before our handlers
            if early is not None:
                raise StopRequested(early)
            for directory in paths.private_dirs():
                check_private_dir(directory)
            lock = _take_lock(paths, inherited_lock)
            if lock is None:
                holder = read_holder(paths.lock)
                notifier.busy(holder)
                message = f"another daemon (pid {holder or '?'}) holds {paths.lock}"
                logger.info("not starting: %s", message)
                if options.detached:
                    return 0
                raise DaemonError(message)
            if options.detached:
                os.chdir(paths.home)
            daemon.hold_home(log_handler)
            start_reaper(paths.home)
            daemon.http.fds = fd_table()
            logger.info("%s", daemon.http.fds.describe())
            for name in sweep_temporaries(paths.config):
                logger.info("removed %s, left by an interrupted edit of the config", name)
            config, config_path = load_config_file(paths, daemon.home_fd)
            options.limits = limits_from_config(config, config_path, options.limits)
            daemon.open_store(store_from_config(config, config_path, options.store_url))
            daemon.http.open(http_from_config(config, config_path, options.http))
            daemon.open_audit(audit_from_config(config, config_path))
            daemon.plugins = load_plugins(config, config_path)
            daemon.adapter_specs = daemon.plugins.adapter_specs()
            if options.transport == "unix":
                daemon.socket_path = str(effective_socket_path(paths.socket))
                _clear_stale_socket(daemon.socket_path)
                daemon.hold_socket_dir()
            return trio.run(daemon.main)
        except StopRequested as exc:
            logger.info("stopped by %s before it was ready", signal_name(exc.signum))
            notifier.error(f"stopped by {signal_name(exc.signum)} during startup")
            return 0
        except DaemonError as exc:
            logger.error("cannot start: %s", exc)
            notifier.error(str(exc))
            if not options.detached:
                print(f"bicameral daemon: error: {exc}", file=sys.stderr)
            return 1
        except BaseException as exc:
            inner = _unwrap(exc)
            if isinstance(inner, StopRequested):
                notifier.error(f"stopped by {signal_name(inner.signum)} during startup")
                return 0
            if isinstance(inner, DaemonError) and not daemon.published:
                logger.error("cannot start: %s", inner)
                notifier.error(str(inner))
                if not options.detached:
                    print(f"bicameral daemon: error: {inner}", file=sys.stderr)
                return 1
            if not daemon.published:
                logger.exception("daemon failed during startup")
                notifier.error(f"daemon failed during startup: {_describe(inner)}")
            else:
                logger.exception("daemon crashed")
            if isinstance(exc, Exception):
                return 1
            raise
    finally:
        quiet_process_handlers()
        daemon.cleanup()
        notifier.close()
        if lock is not None:
            lock.release()
        logger.info("daemon pid %d exited", os.getpid())
        logging.shutdown()


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """One line for the user; a start failure deep in the tree names its path."""
    path: list[str] = []
    while isinstance(exc, ChildStartError):
        if not path:
            path.append(exc.supervisor)
        path.append(exc.child)
        if exc.error is None:
            return f"{'/'.join(path)} returned before it was ready"
        exc = _unwrap(exc.error)
    if path:
        return f"{'/'.join(path)} failed to start: {exc!r}"
    return repr(exc)


def _take_lock(paths: DaemonPaths, inherited: str | None) -> LockFile | None:
    if inherited:
        try:
            fd = int(inherited)
        except ValueError:
            raise DaemonError(f"invalid {LOCK_FD_ENV}={inherited!r}") from None
        return LockFile.adopt(fd, paths.lock)
    return LockFile.try_acquire(paths.lock)


def _clear_stale_socket(path: str) -> None:
    """Remove a socket left behind by a dead daemon; we hold the lock, so it is stale."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonError(
            f"socket path {path} exists and is not a socket; remove it or use --socket"
        )
    os.unlink(path)
