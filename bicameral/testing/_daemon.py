"""The ``bicameral_daemon`` fixture's object: one real daemon in a temporary state dir.

The daemon is the real thing, started the way ``bicameral daemon start``
starts it (detached, readiness over a pipe, descriptor published when it
answers) in a directory made under ``/tmp`` (on POSIX): pytest's ``tmp_path``
is usually too long for an AF_UNIX socket path.

Standard library and bicameral's client side only (plus psutil at teardown):
no Trio, no MCP SDK in the test process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.platform import kill_process, short_temp_root

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bicameral.daemon import DaemonPaths, Descriptor
    from bicameral.protocol import BlockingClient

__all__ = ["BicameralDaemon", "LeftBehind"]

#: Variables that would make the test's daemon act on the test runner's behalf.
_DROPPED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


class LeftBehind(AssertionError):
    """Teardown found something of the daemon still there (and removed it)."""


def servers_toml(servers: Mapping[str, Mapping[str, Any]]) -> str:
    """``[mcp.servers.NAME]`` tables for ``servers`` (name -> table)."""
    import tomlkit

    doc = tomlkit.document()
    doc.add(tomlkit.comment("written by the bicameral_daemon fixture"))
    doc["mcp"] = {"servers": {name: dict(table) for name, table in servers.items()}}
    return tomlkit.dumps(doc)


class BicameralDaemon:
    """A daemon for one test, in its own state directory.

    Nothing runs until first use: :meth:`start`, or any of :attr:`pid`,
    :attr:`socket_path`, :attr:`descriptor`, :meth:`client`, :meth:`call`
    starts it. So a test configures it first::

        def test_tools(bicameral_daemon):
            bicameral_daemon.configure({"echo": {"command": "my-mcp-server"}})
            assert bicameral_daemon.call("adapters.list")[0]["state"] == "running"

    Attributes:
      home: the state directory (a short path under ``/tmp``, mode 0700).
      paths: its resolved :class:`~bicameral.daemon.DaemonPaths`.
      env: the environment the daemon (and so every MCP server) is started
        with: this process's, without ``BICAMERAL_*``, ``PYTEST_*`` and the
        service manager's variables. Edit it before the daemon starts.
    """

    def __init__(self, *, prefix: str = "bcm-") -> None:
        from bicameral.daemon import resolve_paths

        self.home = Path(tempfile.mkdtemp(dir=short_temp_root(), prefix=prefix))
        self.home.chmod(0o700)
        self.paths: DaemonPaths = resolve_paths(self.home, environ={})
        self.env: dict[str, str] = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BICAMERAL_", "PYTEST_")) and key not in _DROPPED_ENV
        }
        self._descriptor: Descriptor | None = None
        self._final_log: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self._descriptor is not None else "not running"
        return f"<BicameralDaemon {self.home} {state}>"

    # --- configuration ------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.paths.config

    @property
    def log_path(self) -> Path:
        return self.paths.log

    def configure(
        self,
        servers: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        text: str | None = None,
    ) -> Path:
        """Write ``config.toml``: MCP servers by name, or the whole file as ``text``.

        ``servers`` maps a server name to its table (``command``, ``args``,
        ``env``, ``cwd``, ``enabled``: see docs/configuration.md). The file is
        validated as the daemon will read it, so a mistake fails here, naming
        the field. Before the daemon starts it is simply its configuration;
        afterwards call :meth:`reload` to apply it. Returns the file's path.
        """
        if (servers is None) == (text is None):
            raise TypeError("configure() takes either servers or text=")
        content = servers_toml(servers) if servers is not None else str(text)
        if servers is not None:
            import tomllib

            from bicameral.mcp import load_servers

            load_servers(tomllib.loads(content), self.config_path)
        from bicameral.daemon import write_atomic

        write_atomic(self.config_path, content.encode("utf-8"))
        return self.config_path

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether this fixture started the daemon and has not stopped it."""
        return self._descriptor is not None

    def start(self, *, wait: float = 30.0, transport: str | None = None) -> dict[str, Any]:
        """Start the daemon (once); returns ``daemon start``'s JSON object.

        ``transport`` is ``"unix"`` (the default on POSIX) or ``"tcp"``
        (loopback TCP with a token, as on Windows); :meth:`client` and
        :meth:`call` use whichever the daemon listens on.

        A daemon that cannot start raises
        :class:`~bicameral.daemon.StartError` with the reason; its log is then
        in the failure report.
        """
        from bicameral.daemon import StartError, read_descriptor, start

        if self._closed:
            raise RuntimeError("this bicameral_daemon has been torn down")
        try:
            result = start(self.paths, wait=wait, transport=transport, env=self.env)
        except StartError as exc:
            # Raised afresh so that the report ends here: the frames below
            # would print the whole environment passed to the daemon.
            raise StartError(exc.reason, exc.log_path) from None
        self._descriptor = read_descriptor(self.paths.descriptor)
        return result

    def _started(self) -> Descriptor:
        if self._descriptor is None:
            self.start()
        assert self._descriptor is not None
        return self._descriptor

    @property
    def descriptor(self) -> Descriptor:
        """The daemon's descriptor (starts the daemon if needed)."""
        return self._started()

    @property
    def pid(self) -> int:
        """The daemon's pid (starts the daemon if needed)."""
        return self._started().pid

    @property
    def socket_path(self) -> str:
        """The Unix socket the daemon listens on (starts the daemon if needed)."""
        path = self._started().socket_path
        if path is None:
            raise AttributeError("this daemon listens on TCP: see descriptor.address")
        return path

    def client(self, *, timeout: float = 10.0) -> BlockingClient:
        """A new :class:`~bicameral.protocol.BlockingClient` connected to the daemon.

        Use it as a context manager, or close it. On the TCP transport it has
        already presented the daemon's token.
        """
        from bicameral.protocol import BlockingClient

        descriptor = self._started()
        if descriptor.transport == "tcp":
            return BlockingClient.connect_tcp(
                descriptor.address or "", descriptor.token or "", timeout=timeout
            )
        return BlockingClient.connect_unix(self.socket_path, timeout=timeout)

    def call(self, method: str, params: Any = None, *, timeout: float = 10.0) -> Any:
        """One JSON-RPC call on a fresh connection; its result, or ``RPCError``."""
        with self.client(timeout=timeout) as client:
            return client.call(method, params, timeout=timeout)

    def reload(self) -> dict[str, Any]:
        """Apply ``config.toml`` to the running daemon: ``{"added", "removed", "restarted"}``."""
        result: dict[str, Any] = self.call("system.reload", timeout=60.0)
        return result

    def bridge_argv(self, server: str | None = None) -> list[str]:
        """The command line of ``bicameral mcp [--server NAME]`` for this daemon.

        For an MCP client under test, e.g. the SDK's
        ``StdioServerParameters(command=argv[0], args=argv[1:], env=daemon.env)``.
        """
        argv = [sys.executable, "-m", "bicameral", "--home", str(self.home), "mcp"]
        return [*argv, "--server", server] if server else argv

    def log_text(self) -> str:
        """The daemon's log so far (kept after teardown removed the directory)."""
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, *, timeout: float = 10.0) -> dict[str, Any]:
        """Stop the daemon (SIGTERM, SIGKILL after ``timeout``) and check nothing is left.

        Returns ``daemon stop``'s JSON object. Raises :class:`LeftBehind`
        (after removing it) when a process, the socket, the descriptor or a
        held lock survived the stop. A later use starts a new daemon.
        """
        from bicameral.daemon import stop

        descriptor = self._descriptor
        if descriptor is None:
            return {"status": "already-stopped"}
        processes = _descendants(descriptor.pid)
        try:
            result = stop(self.paths, timeout=timeout)
        finally:
            self._descriptor = None
        problems = _left_behind(self.paths, descriptor, processes)
        if problems:
            raise LeftBehind(
                f"the daemon (pid {descriptor.pid}) left behind: {'; '.join(problems)}"
            )
        return result

    def close(self) -> None:
        """Teardown: stop the daemon if running, then remove the state directory."""
        if self._closed:
            return
        try:
            if self._descriptor is None:
                # Started by someone else (`bicameral mcp` in a test)? Stop that too.
                from bicameral.daemon import MalformedDescriptor, read_descriptor

                try:
                    self._descriptor = read_descriptor(self.paths.descriptor)
                except MalformedDescriptor:
                    self._descriptor = None
            self.stop()
        finally:
            self._closed = True
            self._final_log = self.log_text()
            shutil.rmtree(self.home, ignore_errors=True)


def _descendants(pid: int) -> list[Any]:
    """The daemon's descendants now (MCP servers and theirs), to check at teardown."""
    import psutil  # type: ignore[import-untyped, unused-ignore]

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _left_behind(paths: DaemonPaths, descriptor: Descriptor, processes: list[Any]) -> list[str]:
    """What survived a stop; each is removed (killed, unlinked) as it is found."""
    import psutil

    from bicameral.daemon import identity_matches, lock_file_held, probe

    problems: list[str] = []
    if identity_matches(
        probe(descriptor.pid), descriptor.process_start_time, descriptor.socket_path
    ):
        problems.append(f"the daemon process {descriptor.pid}")
        kill_process(descriptor.pid)
    # Servers die with the daemon (process group stop, parent-death signal);
    # give the kernel a moment to deliver that, then count who is still there.
    _, alive = psutil.wait_procs(processes, timeout=5.0)
    for proc in alive:
        problems.append(f"process {proc.pid} ({_name(proc)})")
        with contextlib.suppress(psutil.Error):
            proc.kill()
    for what, path in (("descriptor", paths.descriptor), ("socket", descriptor.socket_path)):
        if path and os.path.lexists(path):
            problems.append(f"its {what} {path}")
            os.unlink(path)
    if lock_file_held(paths.lock):
        problems.append(f"a held lock {paths.lock}")
    return problems


def _name(proc: Any) -> str:
    try:
        return " ".join(proc.cmdline())[:80] or str(proc.name())
    except Exception:
        return "?"
