"""The running daemon: its supervisor tree, control socket, descriptor and cleanup.

One `RunningDaemon` per ``serve`` (:mod:`._serve`, which runs the process
around it)::

    bicameral (one_for_one)
    ├── signals    the signal child: stop / second stop / reload requests
    ├── server     the JSON-RPC listener (Unix socket, or loopback TCP + token)
    ├── adapters   a subtree whose children the plugins declare (MCP servers)
    └── http       the HTTP listener, when one is configured

Its control methods are :mod:`._methods`, its reload :mod:`._reload`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

import bicameral
from bicameral.daemon._audit import AUDIT_FILE, AuditLog, AuditSettings
from bicameral.daemon._descriptor import (
    PROTOCOL_VERSION,
    Descriptor,
    remove_descriptor_if,
    utc_timestamp,
    write_descriptor,
)
from bicameral.daemon._errors import ConfigError, DaemonError
from bicameral.daemon._health import core_healthy, status_line
from bicameral.daemon._held import HeldDirs
from bicameral.daemon._identity import process_start_time
from bicameral.daemon._listener import ListenerSlot
from bicameral.daemon._logging import private_rotating_handler
from bicameral.daemon._methods import ControlMethods
from bicameral.daemon._paths import check_trusted_path
from bicameral.daemon._plugin import DaemonHost, LoadedPlugins
from bicameral.daemon._readiness import Notifier, watchdog_interval
from bicameral.daemon._reload import reload_config
from bicameral.daemon._signals import (
    graceful_signals,
    quiet_process_handlers,
    reload_signals,
    signal_child,
    take_early_reload,
)
from bicameral.daemon._store import SharedStore, StoreSettings
from bicameral.protocol import (
    Dispatcher,
    serve_tcp,
    serve_unix,
)
from bicameral.supervisor import ChildSpec, Supervisor, current_child

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from bicameral.daemon._serve import ServeOptions

__all__ = ["SERVER_GRACE", "RunningDaemon"]

logger = logging.getLogger("bicameral.daemon")

SERVER_GRACE = 1.0
"""Seconds the listener gets to finish in-flight requests when stopping."""


class RunningDaemon:
    """State of one ``serve`` run: the tree, the control requests, what to clean up."""

    def __init__(self, options: ServeOptions, notifier: Notifier) -> None:
        self.options = options
        self.paths = options.paths
        self.notifier = notifier
        self.pid = os.getpid()
        self.start_time = process_start_time()
        self.started_at = time.time()
        self.t0 = time.monotonic()
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
        self.reload_lock: trio.Lock | None = None
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
            env_token=self.options.http_token,
            problems=self.problems,
        )
        self.audit: AuditLog | None = None
        self.store: SharedStore | None = None

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
        self.reload_lock = trio.Lock()
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
            audit=self.audit.write if self.audit is not None else None,
            store=self.store,
        )
        self.http.on_listener = self.host.set_http
        ControlMethods(self).install(self.dispatcher)
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
        if self.store is not None:
            nursery.start_soon(self.store.watch)  # its first connection: after readiness
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
            if core_healthy(tree):
                self.notifier.watchdog()
            summary = status_line(tree)
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
        if self.audit is not None:
            self.audit.close()
            self.audit = None
        if self.store is not None:
            self.store.close()
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

    def open_store(self, settings: StoreSettings | None) -> None:
        """The shared store, when ``[daemon.store]`` names one (connected after readiness)."""
        if settings is not None:
            self.store = SharedStore(settings)
            logger.info("shared store: %s", settings.shown)

    def problems(self) -> list[str]:
        """What ``/readyz`` adds to ``ready``: what works less than it should, and why."""
        if self.store is not None and self.store.problem is not None:
            return [f"store unreachable: {self.store.problem}"]
        return []

    def open_audit(self, settings: AuditSettings) -> None:
        """Open ``audit.log`` when ``[daemon.audit] enabled`` (docs/configuration.md)."""
        if settings.enabled:
            path = self.held.directory(self.paths.home) / AUDIT_FILE
            self.audit = AuditLog(path, settings, private_rotating_handler(path))

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

    def audit_settings(self) -> AuditSettings:
        """``[daemon.audit]`` as this run applies it."""
        if self.audit is None:
            return AuditSettings()
        return AuditSettings(enabled=True, arguments=self.audit.arguments)

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
        """Re-read config.toml and apply it (:mod:`._reload`); `ConfigError` changes nothing."""
        return await reload_config(self)


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
