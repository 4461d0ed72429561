"""One configured MCP server as a supervisor subtree, kept free of the MCP SDK.

Each server is a `ServerTree`: a supervisor of its own, a TRANSIENT child of
the daemon's ``adapters`` subtree, with one PERMANENT child, ``server``,
that runs one instance of the server (spawn, initialize, list, serve,
watch) and raises when that instance exits, breaks its protocol or stops
answering pings. The supervisor does every restart, with `BACKOFF` and an
intensity of `MAX_RESTARTS` within `MAX_SECONDS`; past it the subtree gives
up as OTP's does (reason *shutdown*), and its TRANSIENT entry stays
``failed`` with the cause, so one crash-looping server never spends the
restart intensity its siblings share, nor takes the daemon down. The
``adapters`` supervisor retries a failed server after `FAILED_RETRY`
seconds (its spec's ``retry_after``, set by the MCP plugin); ``mcp
restart``, ``adapters.restart`` and a reload do it at once. A remote server
is retried with `REMOTE_RETRY` instead, for as long as it is down (``mcp ps``:
"down, retrying"): an outage is not a bug that retrying cannot fix.

Readiness never waits for a server: ``server`` reports started before it
spawns anything, so the ``adapters`` subtree counts as started as soon as
each server's subtree exists, and the daemon is ready at once however many
servers are configured and however slow or broken they are. Importing the
SDK (most of a second, pydantic models) happens after that, in a worker
thread, while the first instance's process is already booting.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
import anyio.to_thread

from bicameral.mcp._spawn import SpawnError, spawn_server
from bicameral.supervisor import (
    Backoff,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Supervisor,
    current_child,
)

if TYPE_CHECKING:
    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._registry import Registry
    from bicameral.mcp._state import Instance, Upstream
    from bicameral.supervisor import ChildHandle

__all__ = [
    "BACKOFF",
    "FAILED_RETRY",
    "MAX_RESTARTS",
    "MAX_SECONDS",
    "REMOTE_RETRY",
    "ServerExited",
    "ServerTree",
    "instance_spec",
    "run_server",
]

#: Restart backoff of a server's instances; its step resets after MAX_SECONDS up.
BACKOFF = Backoff(initial=0.5, maximum=30.0, factor=2.0, jitter=0.1)
#: Intensity: more than MAX_RESTARTS within MAX_SECONDS and the server is `failed`.
MAX_RESTARTS, MAX_SECONDS = 5, 60.0
#: A failed server is tried again after this long (or at once on restart/reload).
FAILED_RETRY = 300.0
#: A remote server that failed is down, not broken: it is tried again with this
#: backoff for as long as the outage lasts, and is back within one step of its return.
REMOTE_RETRY = Backoff(initial=2.0, maximum=30.0, factor=2.0, jitter=0.1)
#: An instance's grace: the process group gets 2 s after SIGTERM, the rest is margin.
INSTANCE_SHUTDOWN = 5.0


def _backoff() -> Backoff:
    """`BACKOFF`, or a faster one from ``BICAMERAL_MCP_BACKOFF`` (its first delay, in
    seconds; for tests that drive a crash loop to its end without waiting 15 s)."""
    raw = os.environ.get("BICAMERAL_MCP_BACKOFF")
    try:
        initial = float(raw) if raw else None
    except ValueError:
        initial = None
    if initial is None or not 0 <= initial <= BACKOFF.initial:
        return BACKOFF
    return Backoff(initial=initial, maximum=initial * 16, factor=2.0, jitter=0.1)


class ServerExited(Exception):
    """A server instance ended on its own; the message says why (its stderr, a signal...)."""


class QuietServerExits(logging.Filter):
    """Keep a server's expected exits out of the supervisor's log as crashes.

    An MCP server that exits (a missing command, a crash, a bad flag) is
    logged by the adapter as one WARNING naming the server and the cause,
    and then restarted by its supervisor, which logs any child's exit as a
    crash with its traceback. For a `ServerExited` that traceback runs only
    through the supervisor's and the adapter's frames, one per restart (two
    broken servers wrote 40 in 4 minutes): this filter drops the
    supervisor's records of it, and keeps only the one line of giving up
    (`RestartIntensityExceeded` caused by one), without its traceback. The
    supervisor's logging is untouched for every other child.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            error = next((a for a in record.args or () if isinstance(a, BaseException)), None)
        if isinstance(error, ServerExited):
            return False
        if isinstance(error, RestartIntensityExceeded) and isinstance(
            error.last_error, ServerExited
        ):
            return record.exc_info is None
        return True


def quiet_server_exits() -> None:
    """Install `QuietServerExits` on the supervisor's logger (once; the daemon's)."""
    supervisor_log = logging.getLogger("bicameral.supervisor")
    if not any(isinstance(f, QuietServerExits) for f in supervisor_log.filters):
        supervisor_log.addFilter(QuietServerExits())


class ServerTree(Supervisor):
    """The subtree of one configured server: a supervisor whose child runs instances.

    Its entry in the ``adapters`` subtree carries the server's live status
    (`Upstream.status`) as ``started_value``, so ``daemon status`` and ``mcp
    ps`` read one place. Two trees of equal configuration compare equal, so
    an unchanged server's spec is left running across a reload.
    """

    def __init__(self, config: ServerConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        super().__init__(
            config.name,
            [
                ChildSpec(
                    "server",
                    run_server,
                    args=(config, registry),
                    restart=Restart.PERMANENT,
                    shutdown=INSTANCE_SHUTDOWN,
                )
            ],
            max_restarts=MAX_RESTARTS,
            max_seconds=MAX_SECONDS,
            backoff=_backoff(),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerTree):
            return NotImplemented
        return self.config == other.config and self.registry is other.registry

    def __hash__(self) -> int:
        return hash(self.config)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        upstream = self.registry.upstream(self.config)
        upstream.tree = self
        upstream.start_soon = self.registry.start_soon
        try:
            upstream.entry = current_child()
        except RuntimeError:  # run on its own (tests): nobody to show the status to
            upstream.entry = None
        upstream.publish()

        class _Started:
            # The subtree's started value is its server's status, not None.
            def started(self, value: object = None) -> None:
                task_status.started(upstream.status())

        try:
            await super().run(task_status=cast("anyio.abc.TaskStatus[None]", _Started()))
        except RestartIntensityExceeded as exc:
            last = str(exc.last_error) if exc.last_error is not None else "exited"
            # The cause first: it is what a person needs, and what a narrow
            # `mcp ps` column still shows.
            upstream.give_up(
                f"{last} (gave up after more than {MAX_RESTARTS} restarts within {MAX_SECONDS:g} s)"
            )
            raise


async def run_server(
    config: ServerConfig,
    registry: Registry,
    *,
    task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The ``server`` child: run one instance of `config`'s server until it ends.

    Reports started at once (readiness never waits for a server). Returns
    when asked to stop; raises `ServerExited` when the instance ends on its
    own, for the supervisor to restart it.
    """
    upstream = registry.upstream(config)
    child: ChildHandle = current_child()
    upstream.instance_started(upstream.primary, child.restarts)
    task_status.started()
    # Servers start after the daemon is ready, all at once: spawning thirty
    # processes (and importing the SDK) must not delay readiness.
    ready = registry.daemon_ready
    if ready is not None and not await _unless_stopping(child, ready.wait):
        return
    await _run(upstream, upstream.primary, child)


def instance_spec(upstream: Upstream, instance: Instance) -> ChildSpec:
    """The child spec of a keyed instance or spare (``i1``, ``i2``...) in `upstream`'s tree.

    TRANSIENT: restarted (with the subtree's backoff and intensity) when its
    process ends on its own, not when it is retired.
    """
    return ChildSpec(
        instance.name,
        run_extra_instance,
        args=(upstream, instance),
        restart=Restart.TRANSIENT,
        shutdown=INSTANCE_SHUTDOWN,
    )


async def run_extra_instance(
    upstream: Upstream,
    instance: Instance,
    *,
    task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A keyed instance's child: like ``server``, for the clients of one key."""
    child: ChildHandle = current_child()
    upstream.instance_started(instance, child.restarts)
    task_status.started()
    try:
        await _run(upstream, instance, child)
    finally:
        if child.stopping.is_set():
            upstream.forget_instance(instance)


async def _run(upstream: Upstream, instance: Instance, child: ChildHandle) -> None:
    config = upstream.config
    prespawned: Any = None
    if "bicameral.mcp._upstream" not in sys.modules:
        # Spawn first, import the SDK meanwhile (in a thread: the event loop
        # keeps answering clients), so the two overlap. (A remote server has
        # nothing to spawn: it is connected to once the SDK is there.)
        if not config.remote:
            try:
                prespawned = await spawn_server(config)
            except SpawnError as exc:
                prespawned = exc
        imported = False
        try:
            imported = await _unless_stopping(child, _import_upstream)
        finally:
            if not imported and isinstance(prespawned, tuple):
                with anyio.CancelScope(shield=True):
                    await prespawned[0].__aexit__(None, None, None)
        if not imported:
            upstream._go_down(instance, "stopped", "stopped while starting")
            return
    from bicameral.mcp import _upstream

    await _upstream.run_instance(upstream, prespawned, instance)


async def _import_upstream() -> None:
    # Abandoned (not waited for) when the server is stopped meanwhile: an
    # import cannot be interrupted, and a stop must not wait a second for it.
    await anyio.to_thread.run_sync(
        importlib.import_module, "bicameral.mcp._upstream", abandon_on_cancel=True
    )


async def _unless_stopping(child: ChildHandle, wait: Any) -> bool:
    """Run ``await wait()``; False (and `wait` cancelled) if the child is asked to stop first."""
    done = False
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await child.stopping.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        await wait()
        done = True
        tg.cancel_scope.cancel()
    return done
