"""``serve``: the daemon process itself.

One Trio program, one supervisor tree::

    bicameral (one_for_one)
    ├── signals    the signal child: stop / second stop / reload requests
    ├── server     the JSON-RPC listener (Unix socket, or loopback TCP + token)
    └── adapters   a subtree whose children the plugins declare (MCP servers)

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

import json
import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

import bicameral
from bicameral.daemon._descriptor import (
    Descriptor,
    remove_descriptor_if,
    utc_timestamp,
    write_descriptor,
)
from bicameral.daemon._errors import ConfigError, DaemonError
from bicameral.daemon._fds import fd_table
from bicameral.daemon._files import sweep_temporaries
from bicameral.daemon._held import HeldDirs
from bicameral.daemon._http import HTTP_ENV, http_from_config, parse_listen
from bicameral.daemon._identity import process_start_time
from bicameral.daemon._listener import ListenerSlot
from bicameral.daemon._lock import LockFile, read_holder
from bicameral.daemon._paths import check_private_dir, check_trusted_path, effective_socket_path
from bicameral.daemon._plugin import DaemonHost, LoadedPlugins, load_config_file, load_plugins
from bicameral.daemon._readiness import Notifier, watchdog_interval
from bicameral.daemon._signals import (
    StopRequested,
    graceful_signals,
    install_process_handlers,
    quiet_process_handlers,
    reload_signals,
    signal_child,
    signal_name,
    take_early_reload,
    take_early_stop,
)
from bicameral.platform import start_reaper
from bicameral.protocol import (
    INVALID_PARAMS,
    SERVER_ERROR,
    Connection,
    Dispatcher,
    Limits,
    RPCError,
    serve_tcp,
    serve_unix,
)
from bicameral.supervisor import ChildSpec, ChildStartError, Supervisor, current_child

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from bicameral.daemon._paths import DaemonPaths

__all__ = ["PROTOCOL_VERSION", "ServeOptions", "limits_from_config", "serve"]

logger = logging.getLogger("bicameral.daemon")

PROTOCOL_VERSION = "1"
LOCK_FD_ENV = "BICAMERAL_LOCK_FD"
LOG_FORMAT_ENV = "BICAMERAL_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
SERVER_GRACE = 1.0
"""Seconds the listener gets to finish in-flight requests when stopping."""


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
        http: str | None = None,
    ) -> None:
        self.paths = paths
        self.transport = transport
        self.detached = detached
        self.limits = limits if limits is not None else Limits()
        # The environment carries the choice through `daemon start`'s detached
        # spawn without another option on the hot path.
        # Checked by `serve`, which can report it through the readiness pipe.
        self.log_format = log_format or os.environ.get(LOG_FORMAT_ENV) or "text"
        #: ``HOST:PORT`` for the HTTP listener over config.toml's (``--http``;
        #: ``daemon start --http`` passes it as ``$BICAMERAL_HTTP``).
        self.http = http or os.environ.get(HTTP_ENV) or None


LIMIT_KEYS = {
    "max_frame": int,
    "max_in_flight": int,
    "max_connections": int,
    "partial_frame_timeout": float,
    "max_buffered": int,
}
"""The keys of ``[daemon.limits]`` in config.toml (`bicameral.protocol.Limits`)."""


def limits_from_config(config: Mapping[str, Any], path: Path | None, default: Limits) -> Limits:
    """``default`` with ``[daemon.limits]`` of config.toml applied.

    Raises :class:`ConfigError` naming the file and the key for an unknown
    key or a bad value. Every key is optional.
    """
    import dataclasses

    where = str(path) if path is not None else "config.toml"
    section = config.get("daemon", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [daemon] must be a table")
    for key in section:
        if key not in ("limits", "http"):
            raise ConfigError(f"{where}: unknown key {key!r} in [daemon] (known: limits, http)")
    table = section.get("limits", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [daemon.limits] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = LIMIT_KEYS.get(key)
        if kind is None:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon.limits] (known: {', '.join(LIMIT_KEYS)})"
            )
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)):
            what = "an integer" if kind is int else "a number of seconds"
            raise ConfigError(f"{where}: [daemon.limits] {key} must be {what}, not {value!r}")
        values[key] = value
    try:
        return dataclasses.replace(default, **values)
    except ValueError as exc:
        raise ConfigError(f"{where}: [daemon.limits] {exc}") from None


# --- the process ----------------------------------------------------------------


def serve(options: ServeOptions) -> int:
    """Run the daemon in this process until it is stopped; return the exit code."""
    install_process_handlers()
    notifier = Notifier.from_environ()
    inherited_lock = os.environ.pop(LOCK_FD_ENV, None)
    if options.log_format not in LOG_FORMATS:
        message = (
            f"log format must be one of {', '.join(LOG_FORMATS)}, not {options.log_format!r} "
            f"(--log-format or ${LOG_FORMAT_ENV})"
        )
        notifier.error(message)
        sys.stderr.write(f"bicameral: {message}\n")
        return 2
    log_handler = _setup_logging(options)
    paths = options.paths
    daemon = _Daemon(options, notifier)
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
            daemon.http.open(http_from_config(config, config_path, options.http))
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


def _private_rotating_handler(path: Path) -> logging.Handler:
    """A size-rotated log whose every file (the rotated ones too) is created 0600."""
    from logging.handlers import RotatingFileHandler

    class PrivateRotatingFileHandler(RotatingFileHandler):
        def _open(self) -> Any:
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    return PrivateRotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, delay=True, encoding="utf-8"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (``--log-format json``).

    Keys: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
    ``pid``, ``message`` and, when the record carries one, ``exc`` (the
    formatted traceback): the same facts as the text format, machine-readable.
    """

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LOG_LEVEL_ENV = "BICAMERAL_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _setup_logging(options: ServeOptions) -> logging.Handler:
    root = logging.getLogger("bicameral")
    level = os.environ.get(LOG_LEVEL_ENV, "info").lower()
    root.setLevel(getattr(logging, level.upper()) if level in LOG_LEVELS else logging.INFO)
    fmt: logging.Formatter
    if options.log_format == "json":
        fmt = JsonFormatter()
    else:
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    handler: logging.Handler
    if options.detached:
        handler = _private_rotating_handler(options.paths.log)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    return handler


# --- the running daemon ---------------------------------------------------------


class _Daemon:
    """State of one ``serve`` run: the tree, the control requests, what to clean up."""

    def __init__(self, options: ServeOptions, notifier: Notifier) -> None:
        self.options = options
        self.paths = options.paths
        self.notifier = notifier
        self.pid = os.getpid()
        self.start_time = process_start_time()
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.plugins = LoadedPlugins([], {})
        self.adapter_specs: list[ChildSpec] = []
        self.socket_path: str | None = None
        self._socket_id: tuple[int, int] | None = None
        self.address: str | None = None
        # os.urandom is what ``secrets.token_hex`` uses, without importing hmac & co.
        self.token: str | None = os.urandom(32).hex() if options.transport == "tcp" else None
        self.published = False
        self._descriptor: Descriptor | None = None
        self._reload_after_ready = False
        #: The state dir (and the directories of the descriptor, log and
        #: socket), held for the daemon's life: every file is made through them.
        self.held = HeldDirs()
        self.stop_reason: str | None = None
        self._stop_event: trio.Event | None = None
        self._hard_stop: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._reload_lock: trio.Lock | None = None
        self.root: Supervisor | None = None
        self.adapters: Supervisor | None = None
        self.host: DaemonHost | None = None
        self.dispatcher = Dispatcher()
        #: The HTTP listener (SPEC §10): on at start, or later on reload.
        self.http = ListenerSlot(
            self.held.directory(self.paths.home),
            ready=lambda: self.published,
            stopping=lambda: self.stopping,
            max_requests=lambda: self.options.limits.max_connections,
        )

    # The Control protocol of the signal child.

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            logger.info("graceful stop requested (%s)", reason)
            self.notifier.stopping()
            if self.host is not None and self.host.stopping is not None:
                self.host.stopping.set()
        if self._stop_event is not None:
            self._stop_event.set()

    def stop_now(self, reason: str) -> None:
        logger.info("immediate stop requested (%s)", reason)
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._hard_stop is not None:
            self._hard_stop.cancel()

    def request_reload(self, reason: str) -> None:
        logger.info("reload requested (%s)", reason)
        if not self.published:
            # Before readiness the tree is still being built: remember it and
            # reload once ready (SPEC §6), as for a SIGHUP during the imports.
            self._reload_after_ready = True
            return
        if self._nursery is not None and not self.stopping:
            self._nursery.start_soon(self._reload_logged)

    async def _reload_logged(self) -> None:
        try:
            result = await self.reload()
        except ConfigError as exc:
            logger.error("reload rejected, keeping the running tree: %s", exc)
        except Exception:
            # E.g. a stop began mid-reload and the subtree stopped under it: a
            # failed reload must never take the daemon down.
            logger.exception("reload failed")
        else:
            logger.info("reloaded: %s", result)

    # The program.

    async def main(self) -> int:
        self._stop_event = trio.Event()
        self._reload_lock = trio.Lock()
        signals = [*graceful_signals(), *reload_signals()]
        with trio.open_signal_receiver(*signals) as receiver:
            try:
                with trio.CancelScope() as hard:
                    self._hard_stop = hard
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        await self._run_tree(nursery, receiver)
                        nursery.cancel_scope.cancel()
            finally:
                quiet_process_handlers()
        logger.info("stopped (%s)", self.stop_reason)
        return 0

    async def _run_tree(self, nursery: trio.Nursery, receiver: AsyncIterator[int]) -> None:
        assert self._stop_event is not None
        self.adapters = Supervisor("adapters", self.adapter_specs)
        self.root = Supervisor(
            "bicameral",
            [
                ChildSpec("signals", signal_child, args=(receiver, self), shutdown=0),
                ChildSpec("server", self._server_child, shutdown=SERVER_GRACE),
                ChildSpec("adapters", self.adapters),
                *([self.http.spec()] if self.http.serving else []),
            ],
        )
        self.host = DaemonHost(
            dispatcher=self.dispatcher,
            adapters=self.adapters,
            root=self.root,
            paths=self.paths,
            pid=self.pid,
            started_at=self.started_at,
            nursery=nursery,
            limits=self.options.limits,
            http=self.http.listener,
            state_dir=self.held.directory(self.paths.home),
        )
        self.http.on_listener = self.host.set_http
        self._install_methods()
        for plugin in self.plugins.plugins:
            try:
                plugin.install(self.host)
            except Exception as exc:
                raise ConfigError(f"plugin {plugin.name!r} failed to install: {exc!r}") from exc
        root_done = trio.Event()

        async def run_root(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            assert self.root is not None
            try:
                await self.root.run(task_status=task_status)
            finally:
                root_done.set()
                # The root ended on its own (it gave up) or was stopped: either
                # way the daemon is done. A crash propagates from here.
                assert self._stop_event is not None
                self._stop_event.set()

        await nursery.start(run_root)
        self._publish()
        if take_early_reload() or self._reload_after_ready:
            self._reload_after_ready = False
            self.request_reload("SIGHUP before ready")
        interval = watchdog_interval()
        if interval:
            nursery.start_soon(self._watchdog, interval)
        await self._stop_event.wait()
        if self.stop_reason is not None:
            await self.root.stop()
        await root_done.wait()
        if self.stop_reason is None:
            # The root returned without being asked to: treat as a crash.
            raise RuntimeError("the supervisor tree stopped on its own")

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog while the daemon's own machinery is healthy.

        Pinging from the event loop proves the loop is not stuck; pinging only
        while the root and its protocol server run proves clients can reach
        us. A failing *adapter* does not stop the pings: the tree restarts
        adapters itself, and restarting the whole daemon would only take every
        other server down with it. ``STATUS=`` follows the adapters' states,
        so ``systemctl --user status bicameral`` says what is degraded.
        """
        last_status = ""
        while True:
            assert self.root is not None
            tree = self.root.snapshot()
            if _core_healthy(tree):
                self.notifier.watchdog()
            summary = _status_line(tree)
            if summary != last_status:
                self.notifier.sd_notify(f"STATUS={summary}")
                last_status = summary
            await trio.sleep(interval)

    def _publish(self) -> None:
        descriptor = Descriptor(
            pid=self.pid,
            process_start_time=self.start_time,
            started_at=utc_timestamp(self.started_at),
            daemon_version=bicameral.__version__,
            protocol_version=PROTOCOL_VERSION,
            # In the foreground the log goes to stderr, not to a file.
            log_path=str(self.paths.log) if self.options.detached else None,
            transport=self.options.transport,
            socket_path=self.socket_path,
            address=self.address,
            token=self.token,
            http_url=self.http.url,
        )
        write_descriptor(self.held.path(self.paths.descriptor), descriptor)
        self._descriptor = descriptor
        self.published = True
        where = self.address if self.options.transport == "tcp" else self.socket_path
        logger.info("daemon pid %d ready on %s", self.pid, where)
        counts = self.adapter_counts()
        self.notifier.ready(f"listening on {where}", json.dumps(counts) if counts else "")
        if self.host is not None:
            self.host.ready.set()

    def cleanup(self) -> None:
        """Remove what this run published; safe to call on every exit path."""
        self.http.close()
        if self.published:
            try:
                remove_descriptor_if(
                    self.held.path(self.paths.descriptor), pid=self.pid, start_time=self.start_time
                )
            except OSError as exc:  # pragma: no cover
                logger.warning("could not remove descriptor: %s", exc)
            self.published = False
        if self.socket_path is not None and self._socket_id is not None:
            bound = self._bind_path()
            try:
                st = os.lstat(bound)
                if (st.st_dev, st.st_ino) == self._socket_id:
                    os.unlink(bound)
            except OSError:
                pass
            self._socket_id = None
        self.held.close()

    def _bind_path(self) -> str:
        """Where the socket is bound: its path through the held directory (SPEC §4)."""
        assert self.socket_path is not None
        return str(self.held.path(Path(self.socket_path)))

    # The server child.

    async def _server_child(self, *, task_status: trio.TaskStatus[Any]) -> None:
        """Run the listener; stop accepting when asked, letting in-flight requests finish.

        On a restart the TCP listener takes the port it had before, since the
        descriptor names it.
        """
        stopping = current_child().stopping
        async with trio.open_nursery() as nursery:
            if self.options.transport == "tcp":
                port = int(self.address.rpartition(":")[2]) if self.address else 0
                assert self.token is not None
                address = await nursery.start(
                    _call_serve_tcp, "127.0.0.1", port, self.dispatcher, self.token, self.options
                )
                self.address = str(address)
                task_status.started({"address": self.address})
            else:
                assert self.socket_path is not None
                bound = self._bind_path()
                await nursery.start(
                    _call_serve_unix, bound, self.dispatcher, self.options, self.socket_path
                )
                os.chmod(bound, 0o600)
                st = os.lstat(bound)
                self._socket_id = (st.st_dev, st.st_ino)
                task_status.started({"socket_path": self.socket_path})
            await stopping.wait()
            nursery.cancel_scope.cancel()

    # The HTTP listener.

    async def apply_http(self, settings: Any) -> str | None:
        """Make the listener match `settings` and republish the descriptor's ``http_url``."""
        assert self.root is not None
        change = await self.http.apply(settings, self.root)
        if change is not None:
            logger.info("%s", change)
            if self.published and self._descriptor is not None:
                self._descriptor.http_url = self.http.url
                write_descriptor(self.held.path(self.paths.descriptor), self._descriptor)
        return change

    # RPC methods.

    def _install_methods(self) -> None:
        d = self.dispatcher
        d.add("system.version", self._m_version)
        d.add("system.health", self._m_health)
        d.add("system.attach", self._m_attach)
        d.add("system.shutdown", self._m_shutdown)
        d.add("system.reload", self._m_reload)
        d.add("system.http", self._m_http)
        d.add("adapters.list", self._m_adapters_list)
        d.add("adapters.restart", self._m_adapters_restart)
        d.add("adapters.start", self._m_adapters_start)
        d.add("adapters.stop", self._m_adapters_stop)

    async def _m_version(self, params: Any, conn: Connection) -> Any:
        return {"daemon_version": bicameral.__version__, "protocol_version": PROTOCOL_VERSION}

    def health(self) -> dict[str, Any]:
        assert self.root is not None
        tree = self.root.snapshot()
        return {
            "status": "ok" if _all_running(tree) else "degraded",
            "pid": self.pid,
            "uptime_s": round(time.monotonic() - self._t0, 3),
            "tree": tree,
        }

    async def _m_health(self, params: Any, conn: Connection) -> Any:
        return self.health()

    async def _m_attach(self, params: Any, conn: Connection) -> Any:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RPCError(INVALID_PARAMS, "system.attach takes an object")
        mode = params.get("mode", "rpc")
        tenant = params.get("tenant_id", "default")
        if not isinstance(mode, str) or not isinstance(tenant, str):
            raise RPCError(INVALID_PARAMS, "mode and tenant_id must be strings")
        handler = None
        if mode != "rpc":
            assert self.host is not None
            handler = self.host.attach_modes.get(mode)
            if handler is None:
                raise RPCError(INVALID_PARAMS, f"unknown attach mode {mode!r}")
        session = {"session_id": os.urandom(16).hex(), "tenant_id": tenant, "mode": mode}
        conn.state["session"] = dict(session, client=params.get("client"))
        if handler is not None:
            extra = await handler(conn, params)
            if isinstance(extra, dict):
                session = {**extra, **session}
        return session

    async def _m_shutdown(self, params: Any, conn: Connection) -> Any:
        self.request_stop("system.shutdown")
        return {"status": "stopping"}

    async def _m_reload(self, params: Any, conn: Connection) -> Any:
        try:
            return await self.reload()
        except ConfigError as exc:
            raise RPCError(SERVER_ERROR, f"reload rejected: {exc}") from None

    async def _m_http(self, params: Any, conn: Connection) -> Any:
        """``{"listen": "HOST:PORT"}``: serve HTTP there from now on (``daemon start --http``).

        The address overrides ``[daemon.http] listen`` as ``--http`` does at
        start; no MCP server is restarted. Returns ``{"http_url"}``.
        """
        listen = params.get("listen") if isinstance(params, dict) else None
        if not isinstance(listen, str):
            raise RPCError(-32602, 'system.http takes {"listen": "HOST:PORT"}')
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise RPCError(-32602, f"--http: {exc}") from None
        assert self._reload_lock is not None
        async with self._reload_lock:
            try:
                self.check_home_unchanged()
                config, path = load_config_file(self.paths, self.home_fd)
                settings = http_from_config(config, path, listen)
                await self.apply_http(settings)
            except DaemonError as exc:
                raise RPCError(-32000, str(exc)) from None
            self.options.http = listen
        return {"http_url": self.http.url}

    async def _m_adapters_list(self, params: Any, conn: Connection) -> Any:
        assert self.adapters is not None
        children: list[dict[str, Any]] = self.adapters.snapshot().get("children", [])
        return children

    def _adapter_name(self, params: Any, method: str) -> str:
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str):
            raise RPCError(INVALID_PARAMS, f'{method} takes {{"name": <adapter name>}}')
        assert self.adapters is not None
        if name not in {child.name for child in self.adapters.children}:
            running = ", ".join(child.name for child in self.adapters.children) or "none"
            raise RPCError(INVALID_PARAMS, f"no adapter named {name!r} (adapters: {running})")
        return name

    async def _m_adapters_restart(self, params: Any, conn: Connection) -> Any:
        """Stop (if running) and start again; revives one its supervisor gave up on."""
        name = self._adapter_name(params, "adapters.restart")
        assert self.adapters is not None
        return await self.adapters.restart_child(name)

    async def _m_adapters_start(self, params: Any, conn: Connection) -> Any:
        """Start a stopped or failed adapter; a running one is left as it is."""
        name = self._adapter_name(params, "adapters.start")
        assert self.adapters is not None
        if self.adapters.child(name).state in ("stopped", "failed"):
            return await self.adapters.restart_child(name)
        return next(c for c in self.adapters.snapshot()["children"] if c["name"] == name)

    async def _m_adapters_stop(self, params: Any, conn: Connection) -> Any:
        """Stop an adapter and keep it stopped (until start, restart or a reload changing it)."""
        name = self._adapter_name(params, "adapters.stop")
        assert self.adapters is not None
        await self.adapters.terminate_child(name)
        return next(c for c in self.adapters.snapshot()["children"] if c["name"] == name)

    # Reload.

    @property
    def home_fd(self) -> int | None:
        """The held descriptor of the state dir (None before `hold_home`)."""
        return self.held.fd(self.paths.home)

    def adapter_counts(self) -> dict[str, int]:
        """The adapters by state: a server's own (``starting``, ``ready``...), else its tree's."""
        counts: dict[str, int] = {}
        if self.adapters is not None:
            for entry in self.adapters.snapshot().get("children", []):
                own = entry.get("started_value")
                state = own.get("state") if isinstance(own, dict) else None
                key = str(state or entry.get("state") or "unknown")
                counts[key] = counts.get(key, 0) + 1
        return counts

    def hold_home(self, log_handler: logging.Handler | None = None) -> None:
        """Hold the state dir and the descriptor's and log's directories (SPEC §4).

        From here on the descriptor and the log (its rotation included) are
        written through them, so a later rename of the state dir cannot send
        them elsewhere; a reload also tells from the held one that the path
        was swapped (`check_home_unchanged`).
        """
        for directory in (self.paths.home, self.paths.descriptor.parent, self.paths.log.parent):
            self.held.hold(directory)
        if isinstance(log_handler, logging.FileHandler):
            log_handler.baseFilename = str(self.held.path(self.paths.log))

    def hold_socket_dir(self) -> None:
        """Hold the socket's directory too (the state dir, or a short fallback's)."""
        if self.socket_path is not None:
            self.held.hold(Path(self.socket_path).parent)

    def check_home_unchanged(self) -> None:
        """Refuse to go on if the state dir's path now names another directory.

        The path was checked (SPEC §4) when the daemon started; if it now
        leads somewhere else (renamed and replaced), a reload must not read
        that directory's config.toml, nor anything else there.
        """
        if self.home_fd is None:
            return
        held = os.fstat(self.home_fd)
        try:
            now = os.stat(self.paths.home)
        except OSError as exc:
            raise ConfigError(
                f"state directory {self.paths.home} is gone ({exc.strerror}); restart the daemon"
            ) from None
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            raise ConfigError(
                f"state directory {self.paths.home} was replaced since the daemon started; "
                "refusing to read it (restart the daemon to use the new one)"
            )
        try:
            check_trusted_path(self.paths.home)
        except DaemonError as exc:
            raise ConfigError(str(exc)) from None

    async def reload(self) -> dict[str, list[str]]:
        """Re-read config.toml and apply the difference to the ``adapters`` subtree.

        An invalid file raises :class:`ConfigError` and changes nothing.
        Specs are compared by name and then by value: new names are started
        (last in the start order), missing ones deleted, changed ones
        replaced in place (`Supervisor.replace_child`), equal ones left
        running.
        """
        assert self._reload_lock is not None and self.adapters is not None
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                self.check_home_unchanged()
                config, path = load_config_file(self.paths, self.home_fd)
                if limits_from_config(config, path, self.options.limits) != self.options.limits:
                    logger.warning(
                        "[daemon.limits] changed: the new limits apply when the daemon restarts"
                    )
                # Validated like the rest (a bad table rejects the reload),
                # applied after the servers (`apply_http`).
                wanted_http = http_from_config(config, path, self.options.http)
                plugins = self.plugins.reconfigure(config, path)
                specs = plugins.adapter_specs()
                current = {child.name: child.spec for child in self.adapters.children}
                wanted = {spec.name: spec for spec in specs}
                result: dict[str, list[str]] = {"added": [], "removed": [], "restarted": []}
                failed: list[str] = []
                for name in current:
                    if name not in wanted:
                        await self.adapters.delete_child(name)
                        result["removed"].append(name)
                for spec in specs:
                    old = current.get(spec.name)
                    if old is not None and old == spec:
                        if self.adapters.child(spec.name).state != "failed":
                            continue
                        # Unchanged but given up on: a reload retries it (SPEC §5).
                        try:
                            await self.adapters.restart_child(spec.name)
                        except Exception as exc:
                            logger.error("reload: retrying %r failed: %r", spec.name, exc)
                            failed.append(spec.name)
                            continue
                        result["restarted"].append(spec.name)
                        continue
                    try:
                        if old is not None:
                            await self.adapters.replace_child(spec)
                        else:
                            await self.adapters.start_child(spec)
                    except Exception as exc:
                        logger.error("reload: adapter %r failed to start: %r", spec.name, exc)
                        failed.append(spec.name)
                        continue
                    result["restarted" if old is not None else "added"].append(spec.name)
                self.plugins = plugins
                self.adapter_specs = specs
                try:
                    change = await self.apply_http(wanted_http)
                except DaemonError as exc:
                    logger.error("reload: %s", exc)
                    failed.append("http")
                    result["http"] = [str(exc)]
                else:
                    if change is not None:
                        result["http"] = [change]
                if failed:
                    result["failed"] = failed
                # A person sees what is still warming up after the reload.
                result["servers"] = self.adapter_counts()  # type: ignore[assignment]
                return result
            finally:
                self.notifier.reloaded()


def _core_healthy(tree: dict[str, Any]) -> bool:
    """The root runs and so does every child of it but the ``adapters`` subtree."""
    if tree.get("state") != "running":
        return False
    return all(
        child.get("state") == "running"
        for child in tree.get("children") or ()
        if child.get("name") != "adapters"
    )


def _status_line(tree: dict[str, Any]) -> str:
    """A one-line summary for systemd's ``STATUS=``: adapters by state."""
    adapters = next((c for c in tree.get("children") or () if c.get("name") == "adapters"), None)
    children = (adapters or {}).get("children") or []
    if not children:
        return "ready; no adapters configured"
    states: dict[str, int] = {}
    for child in children:
        states[child.get("state", "?")] = states.get(child.get("state", "?"), 0) + 1
    parts = [f"{n} {state}" for state, n in sorted(states.items())]
    return f"ready; adapters: {', '.join(parts)}"


def _all_running(entry: dict[str, Any]) -> bool:
    """Every node runs, and none reports itself degraded.

    A child reports its own health through its started value (an MCP
    server's subtree: ``degraded`` when it came back with no tools,
    ``restarting`` between two instances, ``failed`` once given up on,
    ``needs-login`` for a remote server whose OAuth login is missing or
    expired, and ``starting`` again after a crash): running, but not to be
    called healthy. A first start (warming up) and ``stopped`` (an operator's ``mcp
    stop``) are not degradation.
    """
    if entry.get("state") != "running":
        return False
    value = entry.get("started_value")
    if isinstance(value, dict):
        health = value.get("health")
        if health in ("degraded", "restarting", "failed", "needs-login"):
            return False
        if health == "starting" and value.get("restarts"):
            return False  # flapping: back to starting after a crash
    return all(_all_running(child) for child in entry.get("children") or ())


async def _call_serve_unix(
    path: str,
    dispatcher: Dispatcher,
    options: ServeOptions,
    shown: str,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on `path` (through the held directory); errors name `shown`, the user's path."""
    try:
        await serve_unix(path, dispatcher, limits=options.limits, task_status=task_status)
    except OSError as exc:
        if path == shown:
            raise
        message = (exc.strerror or str(exc)).replace(path, shown)
        raise OSError(exc.errno, message, shown) from None


async def _call_serve_tcp(
    host: str,
    port: int,
    dispatcher: Dispatcher,
    token: str,
    options: ServeOptions,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_tcp(
        host, port, dispatcher, token=token, limits=options.limits, task_status=task_status
    )
