"""The daemon's HTTP listener as one slot: off, or on at an address, changed while running.

The listener (`HttpListener`, SPEC §10) is opened at start when
``[daemon.http] listen`` or ``--http`` asks for it, and since it is only a
child of the root supervisor (``http``, started last so it stops first), it
can also come and go later without touching any MCP server:

- a reload whose ``[daemon.http]`` differs applies it (`ListenerSlot.apply`):
  turned on, the child is started; moved to another address, the new
  address is bound first (so a busy port rejects the change and the old
  listener keeps serving), then the child is restarted on it; options
  changed at the same address apply to the next request; turned off, the
  child is stopped (its requests drain first);
- ``bicameral daemon start --http HOST:PORT`` against a running daemon sends
  ``system.http``, which records the address as the override of config.toml
  (as ``--http`` is at start) and applies it the same way.

One `HttpListener` object serves the daemon's whole life once made, so what
plugins mounted on it (``/mcp``, their ``/metrics`` collectors) stays mounted
however often it moves or pauses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from bicameral.daemon._http import HTTP_GRACE, HttpListener, listener_token
from bicameral.supervisor import ChildSpec, current_child

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from pathlib import Path

    from bicameral.daemon._http import HttpSettings
    from bicameral.supervisor import Supervisor

__all__ = ["HTTP_CHILD", "ListenerSlot"]

logger = logging.getLogger("bicameral.daemon")

HTTP_CHILD = "http"
"""The name of the listener's child in the root supervisor."""


class ListenerSlot:
    """The daemon's one HTTP listener: made on first use, then on, moved or off.

    `state_dir` is where ``http.token`` lives (the held state dir); `ready`,
    `stopping` and `max_requests` go to the listener (``/readyz``, the
    request bound; read when the listener is made, after config.toml's
    ``[daemon.limits]`` applied). `on_listener` is called once, with the listener, when it
    is first made (the daemon hands it to plugins then).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        ready: Callable[[], bool],
        stopping: Callable[[], bool],
        max_requests: Callable[[], int],
        env_token: str | None = None,
        problems: Callable[[], list[str]] | None = None,
    ) -> None:
        self._state_dir = state_dir
        #: ``$BICAMERAL_HTTP_TOKEN``, when the platform gave the token that way.
        self._env_token = env_token
        #: What ``/readyz`` adds under ``ready`` (`HttpListener.problems`).
        self._problems = problems
        self._ready = ready
        self._stopping = stopping
        self._max_requests = max_requests
        self.listener: HttpListener | None = None
        self.serving = False
        self._socket: socket.socket | None = None
        self.on_listener: Callable[[HttpListener], None] | None = None
        #: The daemon's descriptor table (`FdTable`, set at start): the
        #: listener sizes its connection caps from it.
        self.fds: Any = None

    @property
    def settings(self) -> HttpSettings | None:
        """What the listener serves now; None when it is off."""
        return self.listener.settings if self.listener is not None and self.serving else None

    @property
    def url(self) -> str | None:
        """The listener's base URL while it is on."""
        return self.listener.url if self.listener is not None and self.serving else None

    def open(self, settings: HttpSettings | None) -> None:
        """At start, before the tree: bind (a port in use fails the start); served later."""
        if settings is None:
            return
        listener = self._listener(settings)
        self._socket = listener.bind()
        self.serving = True
        logger.info("HTTP listener on %s", listener.url)

    def spec(self) -> ChildSpec:
        """The root's ``http`` child."""
        return ChildSpec(HTTP_CHILD, self._child, shutdown=HTTP_GRACE + 1.0)

    def close(self) -> None:
        """Close a socket bound but never served (a failed start, or at exit)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def apply(self, settings: HttpSettings | None, root: Supervisor) -> str | None:
        """Make the running listener match `settings`; what changed (for the log), or None.

        Raises `DaemonError` (the new address cannot be bound) with the
        running listener untouched.
        """
        current = self.settings
        if settings == current:
            return None
        if settings is None:
            assert self.listener is not None
            await root.delete_child(HTTP_CHILD)
            self.serving = False
            return f"HTTP listener at {self.listener.url} stopped"
        if current is not None and (settings.host, settings.port) == (current.host, current.port):
            assert self.listener is not None
            self.listener.settings = settings  # the guards read it on every request
            return f"HTTP listener at {self.listener.url}: options changed"
        # Bind the new address on the side first: the running listener (its
        # guards check Host against its own address) is not touched if it fails.
        trial = HttpListener(
            settings, None, ready=self._ready, stopping=self._stopping, max_requests=0
        )
        sock = trial.bind()
        try:
            listener = self._listener(settings)
            if self.serving:
                await root.delete_child(HTTP_CHILD)
        except BaseException:
            sock.close()
            raise
        listener.settings, listener.port = settings, trial.port
        self.close()
        self._socket = sock
        self.serving = True
        await root.start_child(self.spec())
        return f"HTTP listener on {listener.url}"

    def _listener(self, settings: HttpSettings) -> HttpListener:
        if self.listener is None:
            token = listener_token(settings, self._state_dir, self._env_token)
            self.listener = HttpListener(
                settings,
                token,
                ready=self._ready,
                stopping=self._stopping,
                max_requests=self._max_requests(),
                fds=self.fds,
                problems=self._problems,
            )
            if self.on_listener is not None:
                self.on_listener(self.listener)
        return self.listener

    async def _child(self, *, task_status: trio.TaskStatus[Any]) -> None:
        """Serve HTTP on the socket bound for it; drain when the child is stopped."""
        listener = self.listener
        assert listener is not None
        sock = self._socket
        if sock is None or sock.fileno() < 0:  # a restart by the supervisor: bind again
            sock = listener.bind()
        self._socket = None
        try:
            await listener.run(sock, current_child().stopping, task_status)
        finally:
            sock.close()
