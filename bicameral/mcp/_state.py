"""What the daemon knows about one configured MCP server: `Upstream`, its `Instance`s, `Peer`.

Kept apart from the code that runs a server's instances (`_upstream`), and
free of the MCP SDK: the state exists from the moment the server's subtree
starts, which is on the daemon's path to readiness, and importing the SDK is
not. The SDK is only touched (lazily) once a live instance exists.

A server has one or more *instances* (processes). Which client uses which
is the server's ``share`` setting (docs/mcp.md, "Sharing"):

* ``shared``: every client uses the *primary* instance (the tree's
  ``server`` child), which is told of no client capability at all.
* ``auto`` (the default): clients are keyed by what a server can observe of
  them (the capabilities ``roots``, ``sampling``, ``elicitation`` they
  declared, and their roots). Clients that declare none of them use the
  primary; clients with equal keys share an instance of their own; and when
  a key includes sampling or elicitation, an instance never has calls in
  flight from two clients at once, so a server's request to "its client"
  always has exactly one client to go to.
* ``per-client``: every client session has an instance of its own.

Keyed instances come from a warm spare when one is ready (so a session is
served in tens of milliseconds), and a new spare is started behind it. A
``per-client`` instance retires as soon as its session ends (what the
server kept for that session must not reach the next one); an ``auto``
instance nobody uses is kept `LINGER` seconds for the next client of its
key, and retired at once when a new instance needs its place under the
server's ``max_instances``. So no session waits for instances nobody uses;
one that finds them all in use waits up to ``ready_timeout``, then is told
the cap is reached and which setting raises it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from bicameral.mcp._common import CALL_WAIT, LIST_METHODS, MAX_FRAME, UpstreamError
from bicameral.mcp._metrics import CallStats
from bicameral.platform import terminate_group
from bicameral.protocol import INTERNAL_ERROR, INVALID_REQUEST, PeerClosed, RPCError

if TYPE_CHECKING:
    from mcp.client.session import ClientSession

    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._dispatcher import LeanDispatcher
    from bicameral.supervisor import ChildHandle, Supervisor

__all__ = ["SHARED", "Instance", "InstanceKey", "Live", "Peer", "Upstream"]

logger = logging.getLogger("bicameral.mcp")

#: The client capabilities a server can observe, and so key instances by.
OBSERVABLE = ("elicitation", "roots", "sampling")
#: Capabilities whose requests must reach exactly the client that caused them.
ROUTED = frozenset({"sampling", "elicitation"})
#: Seconds an instance nobody uses is kept before it is retired.
LINGER = 30.0
#: How long a list request waits for a list being listed again.
FRESH_WAIT = 5.0
#: MCP log levels, least to most severe.
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_RANK = {level: rank for rank, level in enumerate(LEVELS)}


@dataclass(frozen=True)
class InstanceKey:
    """What a server can observe of the client(s) an instance serves.

    ``caps``: the observable capabilities declared; ``roots``: the roots as
    canonical JSON (None when not declared, or for a spare not yet given to a
    client); ``owner``: the one client session it belongs to (``per-client``).
    """

    caps: frozenset[str] = frozenset()
    roots: str | None = None
    owner: str | None = None
    spare: bool = False

    @property
    def routed(self) -> bool:
        """Its clients can be asked for sampling or elicitation (calls go one client at a time)."""
        return bool(self.caps & ROUTED)

    def describe(self) -> dict[str, Any]:
        roots = json.loads(self.roots) if self.roots is not None else None
        return {
            "capabilities": sorted(self.caps),
            "roots": [r.get("uri") for r in roots if isinstance(r, dict)] if roots else roots,
            "owner": self.owner,
            "spare": self.spare,
        }


#: The primary instance's key: no client capability at all.
SHARED = InstanceKey()


class Peer(Protocol):
    """An MCP client session attached to the daemon, as upstreams see it."""

    client_id: str
    client_capabilities: dict[str, Any]
    #: The level the client asked for with ``logging/setLevel`` (None: not asked).
    log_level: str | None

    async def client_roots(self) -> list[dict[str, Any]]:
        """The client's roots (asked once, again after its ``roots/list_changed``)."""
        ...

    async def client_request(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Send a server-to-client request to this client; raise `UpstreamError` on its error."""
        ...

    def upstream_event(self, upstream: Upstream, method: str, params: dict[str, Any]) -> None:
        """A notification from `upstream` for this client (logging, resource updates)."""
        ...

    def lists_changed(self, upstream: Upstream, kinds: frozenset[str]) -> None:
        """`upstream`'s tools / resources / prompts changed (`kinds` names which)."""
        ...


#: Rounds of ``input_required`` one call may take before it is given up.
MAX_ROUNDS = 10
#: The capability a server's request needs of its client.
_CAPABILITY_OF = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}


class Live:
    """One running server process and its MCP session (one "generation")."""

    __slots__ = ("cause", "closed", "dispatcher", "pid", "retry_safe", "session")

    def __init__(self, dispatcher: LeanDispatcher, session: ClientSession, pid: int | None) -> None:
        self.dispatcher = dispatcher
        self.session = session
        self.pid = pid
        self.closed = anyio.Event()
        self.cause = "the connection closed"
        #: It ended without the server having seen the calls in flight (a
        #: remote server that lost our session): they may be sent again.
        self.retry_safe = False


class Instance:
    """One instance (process) of a server, its MCP session, and the clients it serves.

    Each is a child of the server's subtree: ``server`` (the primary) or
    ``i1``, ``i2``... (keyed instances and spares). Restarted by that
    subtree's supervisor when it crashes; the clients' log level and
    subscriptions are restored on the new process.
    """

    def __init__(self, upstream: Upstream, name: str, key: InstanceKey) -> None:
        self.upstream = upstream
        self.name = name
        self.key = key
        self.state = "starting"
        self.pid: int | None = None
        self.live: Live | None = None
        self.init_result: dict[str, Any] | None = None
        self.lists: dict[str, list[dict[str, Any]]] = {k: [] for k in LIST_METHODS}
        #: Lists the server said changed and that are being listed again.
        self.stale: set[str] = set()
        #: The server's own page sizes for each list (clients get the same pages).
        self.pages: dict[str, list[int]] = {k: [] for k in LIST_METHODS}
        self.clients: set[Peer] = set()
        self.inflight: dict[Peer, int] = {}
        self.last_caller: Peer | None = None
        #: uri -> the clients subscribed to it here.
        self.subscriptions: dict[str, set[Peer]] = {}
        #: The log level the server was told (the most verbose any client asked for).
        self.level: str | None = None
        self.retiring = False
        self.generations = 0  # how many times it went live
        self.asked_roots = False
        #: Why its last process ended (told to its clients when the next one is up).
        self.exit_reason: str | None = None
        self._changed = anyio.Event()

    @property
    def primary(self) -> bool:
        return self.name == "server"

    def roots(self) -> list[dict[str, Any]]:
        """The roots this instance's server is given: its key's (its client's)."""
        if self.key.roots is None:
            return []
        roots: list[dict[str, Any]] = json.loads(self.key.roots)
        return roots

    def busy_with(self) -> set[Peer]:
        return {peer for peer, n in self.inflight.items() if n > 0}

    def touch(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        self.upstream.touch()

    async def wait_change(self) -> None:
        await self._changed.wait()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "clients": sorted(peer.client_id for peer in self.upstream.clients_of(self)),
            "key": self.key.describe(),
        }

    def route_peer(self, method: str) -> Peer:
        """The client a server-to-client request goes to (docs/mcp.md, "Routing").

        The one client with calls in flight here (instances whose clients
        can be asked for sampling or elicitation never have two); else the
        client that called last, still attached; else the only client.
        """
        busy = self.busy_with()
        if len(busy) == 1:
            return next(iter(busy))
        if not busy:
            if self.last_caller is not None and self.last_caller in self.clients:
                return self.last_caller
            if len(self.clients) == 1:
                return next(iter(self.clients))
        why = (
            f"{len(busy)} clients have calls in flight to it"
            if busy
            else "no client is using it"
            if not self.clients
            else f"{len(self.clients)} clients use it and none has a call in flight"
        )
        raise UpstreamError(
            INVALID_REQUEST,
            f"bicameral cannot tell which client {method} from MCP server "
            f"{self.upstream.name!r} is for: {why}",
        )

    def wanted_level(self) -> str | None:
        """The most verbose level any client of this instance asked for (None: nobody asked)."""
        clients = self.upstream.clients_of(self)
        levels = [p.log_level for p in clients if p.log_level in _RANK]
        return min(levels, key=_RANK.__getitem__) if levels else None


def level_passes(message_level: Any, wanted: str | None) -> bool:
    """Whether a log message at `message_level` reaches a client that asked for `wanted`."""
    if wanted is None or wanted not in _RANK:
        return True
    return _RANK.get(message_level, len(LEVELS)) >= _RANK[wanted]


class Upstream:
    """What the daemon knows about one configured MCP server, live or not.

    Attributes read by the session host: `name`, `state` (the primary
    instance's), `init_result` (the server's raw ``initialize`` result, or
    ``None`` before its first start), `lists` (the primary's last known
    lists, kept while it restarts), `peers` (every attached client).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.name = config.name
        self.state = "starting"
        self.restarts = 0
        self.calls = CallStats()  # for /metrics
        self.last_error: str | None = None
        self.last_exit_at: float | None = None
        self.peers: set[Peer] = set()
        self.primary = Instance(self, "server", SHARED)
        self.instances: dict[str, Instance] = {"server": self.primary}
        self._assigned: dict[Peer, Instance] = {}
        self._next_instance = 0
        self._changed = anyio.Event()  # any state change; replaced each time
        #: The server's entry in the ``adapters`` subtree (set by `ServerTree.run`).
        self.entry: ChildHandle | None = None
        #: The server's own subtree (set by `ServerTree.run`), to add instances to.
        self.tree: Supervisor | None = None
        #: Runs a background task for the daemon's life (the plugin's host).
        self.start_soon: Callable[..., None] | None = None
        #: The daemon's state directory (its OAuth tokens live under it).
        self.home: Path | None = None
        #: The store replicas share, when configured (its OAuth tokens live there).
        self.store: Any = None
        #: The OAuth provider all instances share (made by `_upstream`, SDK-side).
        self.auth: Any = None
        self.shutting_down = False
        #: Called after each `publish` (the registry's check of its rules, docs/tools.md).
        self.on_publish: Callable[[Upstream], None] | None = None
        #: Why a remote server is degraded now (HTTP 5xx, a stalled call), or None.
        self.trouble: str | None = None
        self.ready_timeout = CALL_WAIT
        #: The longest line accepted from the server (the daemon's ``max_frame``).
        self.max_frame = MAX_FRAME

    # -- the primary's view (what clients see before they have an instance) -----

    @property
    def init_result(self) -> dict[str, Any] | None:
        return self.primary.init_result

    @property
    def lists(self) -> dict[str, list[dict[str, Any]]]:
        return self.primary.lists

    @property
    def pid(self) -> int | None:
        return self.primary.pid

    @property
    def health(self) -> str:
        """``ok`` when ready with tools (or a server that offers none by design), else why not."""
        if self.state == "ready":
            return "ok"
        return "degraded" if self.state == "degraded" else self.state

    def status(self) -> dict[str, Any]:
        """Plain, JSON-serialisable status (the adapter's ``started_value``)."""
        info = (self.init_result or {}).get("serverInfo") or {}
        return {
            "state": self.state,
            "health": self.health,
            "pid": self.pid,
            "restarts": self.restarts,
            "tools": len(self.lists["tools"]),
            "clients": len(self.peers),
            "resources": len(self.lists["resources"]),
            "prompts": len(self.lists["prompts"]),
            "server_info": info,
            "protocol_version": (self.init_result or {}).get("protocolVersion"),
            "last_error": self.last_error,
            "share": self.config.share,
            "url": self.config.url,
            "instances": [inst.status() for inst in self.instances.values()],
        }

    def terminate(self) -> None:
        """SIGTERM every instance's process group (the daemon is stopping).

        Their own stops (by the supervisor) follow and find them exiting; the
        exits themselves are not crashes (see `shutting_down`).
        """
        self.shutting_down = True
        for inst in list(self.instances.values()):
            pid = inst.pid  # our own child, not yet reaped while set: never a stranger's pid
            if pid is not None:
                terminate_group(pid)  # its own group: pgid == pid (CTRL_BREAK on Windows)

    def publish(self) -> None:
        """Show the live status in the server's tree entry (its ``started_value``)."""
        if self.entry is not None:
            self.entry.report(value=self.status())
        if self.on_publish is not None:
            self.on_publish(self)  # the registry checks the rules against new lists

    def touch(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def instance_started(self, instance: Instance, restarts: int) -> None:
        """A new process of `instance` is starting (`restarts`: how many came before it)."""
        instance.state = "starting"
        if instance.primary:
            self.restarts = restarts
            self._set_state("starting")
        else:
            instance.touch()
            self.publish()

    def give_up(self, reason: str) -> None:
        """The server's supervisor gave up: ``failed`` until restarted."""
        for inst in list(self.instances.values()):
            if not inst.primary:
                self._forget(inst)
        self._go_down(self.primary, "failed", reason)

    def _set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.last_error = error
        self.primary.state = state
        self.primary.touch()
        self.publish()

    # -- instances going up and down (called by `_upstream`) -------------------

    def _go_live(
        self,
        instance: Instance,
        live: Live,
        init: dict[str, Any],
        lists: dict[str, list[dict[str, Any]]],
    ) -> None:
        had = instance.init_result is not None
        old = instance.lists
        instance.live = live
        instance.pid = live.pid
        instance.init_result = init
        instance.lists = lists
        instance.generations += 1
        if instance.primary and self.config.share == "per-client" and self.start_soon:
            # Every session has an instance of its own: keep one warm before
            # the first client comes (then one of the last client's kind).
            self.start_soon(self._start_spare, frozenset())
        if instance.primary:
            offers_tools = "tools" in (init.get("capabilities") or {})
            if had and offers_tools and not lists["tools"] and old["tools"]:
                # It came back with none: keep serving calls, but do not call it healthy.
                self._set_state("degraded", "server came back after a restart with no tools")
            else:
                self._set_state("ready")
        else:
            instance.state = "ready"
            instance.touch()
            self.publish()
        changed = frozenset(k for k in lists if lists[k] != old[k])
        if changed:  # also a first start, for clients already attached
            self._notify_lists(instance, changed)

    def _detach(self, instance: Instance, live: Live) -> None:
        """`live` is gone (its stdout closed): new calls wait for the next one."""
        if instance.live is live:
            instance.live = None
            instance.pid = None
            instance.touch()

    def _go_down(self, instance: Instance, state: str, reason: str) -> None:
        instance.live = None
        instance.pid = None
        if instance.primary:
            if state in ("restarting", "failed"):
                self.last_exit_at = time.time()
            self._set_state(state, reason)
        else:
            instance.state = state
            instance.touch()
            self.publish()

    def clients_of(self, instance: Instance) -> list[Peer]:
        """The attached clients `instance` serves (the primary: also the unassigned ones)."""
        if instance.primary:
            return [p for p in self.peers if self._assigned.get(p, instance) is instance]
        return list(instance.clients)

    def _notify_lists(self, instance: Instance, kinds: frozenset[str]) -> None:
        for peer in self.clients_of(instance):
            peer.lists_changed(self, kinds)

    def _update_list(self, instance: Instance, kind: str, items: list[dict[str, Any]]) -> None:
        if instance.lists[kind] != items:
            instance.lists = {**instance.lists, kind: items}
            self._notify_lists(instance, frozenset((kind,)))
            self.publish()

    def restored(self, instance: Instance) -> list[tuple[str, dict[str, Any]]]:
        """What a new process of `instance` must be told again: log level, subscriptions."""
        todo: list[tuple[str, dict[str, Any]]] = []
        if instance.level is not None:
            todo.append(("logging/setLevel", {"level": instance.level}))
        for uri in instance.subscriptions:
            todo.append(("resources/subscribe", {"uri": uri}))
        return todo

    # -- which instance serves a client ----------------------------------------

    async def key_for(self, peer: Peer) -> InstanceKey:
        share = self.config.share
        if share == "shared":
            return SHARED
        caps = frozenset(c for c in OBSERVABLE if c in peer.client_capabilities)
        roots = None
        if "roots" in caps:
            listed = await peer.client_roots()
            roots = json.dumps(listed, sort_keys=True, separators=(",", ":"))
        if share == "per-client":
            return InstanceKey(caps, roots, owner=peer.client_id)
        if not caps:
            return SHARED
        return InstanceKey(caps, roots)

    def attach(self, peer: Peer) -> None:
        self.peers.add(peer)
        self.publish()

    def detach(self, peer: Peer) -> None:
        """`peer` left: drop it everywhere, and retire instances nobody uses."""
        self.peers.discard(peer)
        inst = self._assigned.pop(peer, None)
        if inst is not None:
            self._leave(inst, peer)
        self.publish()

    def _leave(self, inst: Instance, peer: Peer) -> None:
        inst.clients.discard(peer)
        for uri, subscribers in list(inst.subscriptions.items()):
            subscribers.discard(peer)
            if not subscribers:
                del inst.subscriptions[uri]
                self._tell(inst, "resources/unsubscribe", {"uri": uri})
        self._apply_level(inst)
        if not inst.clients and not inst.primary:
            if inst.key.owner is not None:
                self._retire(inst)  # per-client: its session is over
            else:
                self._retire_later(inst)
        inst.touch()

    async def instance_for(self, peer: Peer, *, exclusive: bool = False) -> Instance:
        """The instance `peer`'s next call goes to (started, or starting, on demand).

        `exclusive`: the call may make the server ask its client something
        (sampling, elicitation): pick an instance on which no other client
        has a call in flight, starting one if needed.
        """
        key = await self.key_for(peer)
        current = self._assigned.get(peer)
        if key == SHARED:
            if current is not None and current is not self.primary:
                self._assigned.pop(peer)
                self._leave(current, peer)
            return self.primary
        exclusive = exclusive and key.routed
        cap = self.config.max_instances
        with anyio.move_on_after(self.ready_timeout):
            while True:
                inst = self._pick(peer, key, current, exclusive)
                if inst is None and len(self.instances) >= cap:
                    self._reclaim_idle(key)
                if inst is None and len(self.instances) < cap and self.tree is not None:
                    if self.config.share == "per-client":
                        inst = await self._take_spare(key)
                    inst = inst or await self._start_instance(key)
                if inst is not None:
                    if inst is not current:
                        if current is not None:
                            self._leave(current, peer)
                        self._assigned[peer] = inst
                        inst.clients.add(peer)
                        self._apply_level(inst)
                        inst.touch()
                        self.publish()
                    return inst
                await self._changed.wait()  # at the limit: wait for one to free up
        in_use = sum(1 for i in self.instances.values() if i.clients)
        why = "each with another client's call in flight" if exclusive else "all in use"
        raise UpstreamError(
            INTERNAL_ERROR,
            f"MCP server {self.name!r} is at its cap of {cap} instances ({why}: "
            f"{in_use} serve other client sessions; waited {self.ready_timeout:g} s for one "
            f"to free up): raise max_instances in [mcp.servers.{self.name}] to allow more",
        )

    def _pick(
        self, peer: Peer, key: InstanceKey, current: Instance | None, exclusive: bool
    ) -> Instance | None:
        def usable(inst: Instance) -> bool:
            if inst.key != key or inst.retiring or inst.state == "failed":
                return False
            return not exclusive or inst.busy_with() <= {peer}

        if current is not None and usable(current):
            return current
        for inst in self.instances.values():
            if usable(inst):
                return inst
        if (
            current is not None
            and not exclusive
            and current.key.caps == key.caps
            and current.clients <= {peer}
            and not current.primary
        ):
            # Its only client changed its roots: the instance follows it,
            # and the server is told to ask again.
            current.key = key
            self._tell(current, "notifications/roots/list_changed", None)
            return current
        return None

    async def _take_spare(self, key: InstanceKey) -> Instance | None:
        for inst in self.instances.values():
            if inst.key.spare and inst.key.caps == key.caps and not inst.retiring:
                inst.key = key
                if inst.asked_roots and "roots" in key.caps:
                    self._tell(inst, "notifications/roots/list_changed", None)
                await self._start_spare(key.caps)
                return inst
        await self._start_spare(key.caps)
        return None

    async def _start_spare(self, caps: frozenset[str]) -> None:
        """Keep one warm spare of the capabilities `caps` (the next such client's)."""
        if any(i.key.spare and i.key.caps == caps for i in self.instances.values()):
            return
        if len(self.instances) < self.config.max_instances - 1:
            await self._start_instance(InstanceKey(caps, None, None, spare=True))

    async def _start_instance(self, key: InstanceKey) -> Instance:
        from bicameral.mcp._adapter import instance_spec

        assert self.tree is not None
        self._next_instance += 1
        inst = Instance(self, f"i{self._next_instance}", key)
        self.instances[inst.name] = inst
        try:
            await self.tree.start_child(instance_spec(self, inst))
        except BaseException:
            self.instances.pop(inst.name, None)
            raise
        self.publish()
        return inst

    def _retire_later(self, inst: Instance) -> None:
        if self.start_soon is None or inst.retiring:
            return

        async def retire() -> None:
            await anyio.sleep(LINGER)
            if inst.clients or inst.retiring or self.instances.get(inst.name) is not inst:
                return
            self._retire(inst)

        self.start_soon(retire)

    def _retire(self, inst: Instance) -> None:
        """Stop `inst` now; its place under ``max_instances`` is free at once."""
        if inst.retiring or inst.primary:
            return
        self._forget(inst)
        tree = self.tree
        if tree is None or self.start_soon is None:
            return

        async def delete() -> None:
            with contextlib.suppress(KeyError, RuntimeError):
                await tree.delete_child(inst.name)

        self.start_soon(delete)

    def _reclaim_idle(self, key: InstanceKey) -> None:
        """At the cap: retire one instance nobody uses (not a spare `key` could take).

        Not one being handed to a client: a per-client instance (it has its
        owner's key from the moment it is chosen) or a keyed one still
        starting (it was started for a client that waits for it).
        """
        idle = [
            i
            for i in self.instances.values()
            if not i.primary
            and not i.clients
            and not i.retiring
            and i.key != key
            and i.key.owner is None
            and (i.key.spare or i.state != "starting")
        ]
        idle.sort(key=lambda i: (i.key.spare and i.key.caps == key.caps, i.key.spare))
        if idle:
            logger.info(
                "MCP server %r: retiring idle instance %s to make room (max_instances %d)",
                self.name,
                idle[0].name,
                self.config.max_instances,
            )
            self._retire(idle[0])

    def _forget(self, inst: Instance) -> None:
        inst.retiring = True
        self.instances.pop(inst.name, None)
        for peer, assigned in list(self._assigned.items()):
            if assigned is inst:
                del self._assigned[peer]
        self.publish()

    def forget_instance(self, inst: Instance) -> None:
        """`inst`'s child ended for good (deleted or given up)."""
        if self.instances.get(inst.name) is inst and not inst.primary:
            self._forget(inst)

    # -- per-client state kept on the instance ---------------------------------

    def _tell(self, inst: Instance, method: str, params: dict[str, Any] | None) -> None:
        """Send `inst`'s server a notification or a request whose answer does not matter."""
        live = inst.live
        if live is None or self.start_soon is None:
            return

        async def send() -> None:
            with contextlib.suppress(Exception):
                if method.startswith("notifications/"):
                    await live.dispatcher.notify(method, params)
                else:
                    await live.dispatcher.call(method, params)

        self.start_soon(send)

    @staticmethod
    def _new_level(inst: Instance) -> str | None:
        """`inst`'s level, brought to what its clients want; the new one if it changed."""
        wanted = inst.wanted_level()
        if wanted is None or wanted == inst.level:
            return None
        inst.level = wanted
        return wanted

    def _apply_level(self, inst: Instance) -> None:
        wanted = self._new_level(inst)
        if wanted is not None and "logging" in ((inst.init_result or {}).get("capabilities") or {}):
            self._tell(inst, "logging/setLevel", {"level": wanted})

    async def set_level(self, peer: Peer) -> None:
        """`peer` asked for a log level: the server gets the most verbose any client asked for.

        Each client then receives only the messages at or above its own level.
        """
        inst = await self.instance_for(peer)
        wanted = self._new_level(inst)
        if wanted is not None and inst.live is not None:
            await self.request(None, "logging/setLevel", {"level": wanted}, instance=inst)

    async def subscribe(self, peer: Peer, uri: str, subscribe: bool) -> dict[str, Any]:
        """``resources/(un)subscribe`` for `peer`: the server is asked once per uri."""
        inst = await self.instance_for(peer)
        subscribers = inst.subscriptions.get(uri)
        if subscribe:
            if subscribers:
                subscribers.add(peer)
                return {}
            result = await self.request(peer, "resources/subscribe", {"uri": uri}, instance=inst)
            inst.subscriptions.setdefault(uri, set()).add(peer)
            return result
        if subscribers is None or peer not in subscribers:
            return {}
        subscribers.discard(peer)
        if subscribers:
            return {}
        del inst.subscriptions[uri]
        return await self.request(peer, "resources/unsubscribe", {"uri": uri}, instance=inst)

    def subscribed(self, inst: Instance, uri: str) -> set[Peer]:
        return inst.subscriptions.get(uri, set())

    def lists_for(self, peer: Peer) -> dict[str, list[dict[str, Any]]]:
        """The lists `peer` sees: its instance's (once it has answered), else the primary's."""
        return self.instance_seen_by(peer).lists

    def instance_seen_by(self, peer: Peer) -> Instance:
        """The instance whose lists `peer` sees: its own once it has answered, else the primary."""
        inst = self._assigned.get(peer)
        if inst is not None and inst.init_result is not None:
            return inst
        return self.primary

    async def fresh(self, peer: Peer, kind: str) -> None:
        """Wait (bounded) while the list `kind` that `peer` sees is being listed again.

        A client that lists right after a call that changed the list (a tool
        that adds a resource) gets the new list, as from the server itself.
        """
        inst = self.instance_seen_by(peer)
        with anyio.move_on_after(FRESH_WAIT):
            while kind in inst.stale and inst.live is not None:
                await inst.wait_change()

    async def settle(self, peer: Peer) -> None:
        """Give `peer` its instance now and wait (bounded) for it to have started once."""
        inst = await self.instance_for(peer)
        with anyio.move_on_after(self.ready_timeout):
            while inst.init_result is None and inst.state == "starting":
                await inst.wait_change()

    # -- calls ----------------------------------------------------------------

    async def wait_first_attempt(self) -> None:
        """Wait until the server's first start has succeeded or failed (bound it yourself)."""
        while self.init_result is None and self.state == "starting":
            await self.primary.wait_change()

    def _stopped_error(self) -> UpstreamError:
        """A stopped server does not come back by itself: say so at once, and how."""
        return UpstreamError(
            INTERNAL_ERROR,
            f"MCP server {self.name!r} is stopped; start it with "
            f"`bicameral mcp start {self.name}` (or `bicameral mcp restart {self.name}`)",
        )

    async def _wait_ready(self, inst: Instance, wait: float) -> Live:
        live = inst.live
        if live is not None:
            return live
        if self.state == "needs-login":
            raise UpstreamError(INTERNAL_ERROR, str(self.last_error))
        if self.state == "failed":
            raise UpstreamError(
                INTERNAL_ERROR,
                f"MCP server {self.name!r} is not available: it failed "
                f"({self.last_error}); restart it with `bicameral mcp restart {self.name}` "
                "or the bicameral__restart tool",
            )
        with anyio.move_on_after(wait):
            while inst.live is None and inst.state not in ("failed", "stopped"):
                if self.state == "failed":
                    break
                await inst.wait_change()
        if inst.live is None:
            state = inst.state if not inst.primary else self.state
            if state == "stopped":
                raise self._stopped_error()
            raise UpstreamError(
                INTERNAL_ERROR,
                f"MCP server {self.name!r} is not available after waiting {wait:g} s "
                f"(state {state}: {self.last_error or 'starting'})",
            )
        return inst.live

    async def request(
        self,
        peer: Peer | None,
        method: str,
        params: Mapping[str, Any] | None,
        on_progress: Any = None,
        wait: float | None = None,
        *,
        instance: Instance | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """Forward one client request to the server and return its raw result.

        Goes to `peer`'s instance (`instance_for`); waits (up to `wait`
        seconds) for one that is starting or restarting. The SDK's dispatcher
        gives the request its own id, so ids of different clients never
        collide; `on_progress` receives the server's progress for it;
        cancelling the caller sends the server ``notifications/cancelled``.

        Raises:
          RPCError: the server answered with an error (its code, message and
            data, as it sent them).
          UpstreamError: the server died while handling the request (a
            message naming the server and the cause), or did not come up in time.
        """
        inst = instance
        if inst is None:
            inst = self.primary if peer is None else await self.instance_for(peer, exclusive=True)
        if peer is not None:
            # Counted from the moment it is chosen, before any wait: another
            # client's call must see this instance as busy at once.
            inst.inflight[peer] = inst.inflight.get(peer, 0) + 1
            inst.last_caller = peer
        started = time.perf_counter()
        failed = True
        try:
            live = inst.live or await self._wait_ready(
                inst, self.ready_timeout if wait is None else wait
            )
            if self.config.remote:
                result = await self._bounded_call(live, method, params, on_progress)
            else:
                result = await live.dispatcher.call(method, params, on_progress=on_progress)
            if result.get("resultType") == "input_required":
                result = await self._rounds(
                    inst, live, method=method, params=params, on_progress=on_progress, result=result
                )
            failed = False
            if self.config.remote:
                self.remote_fine()
            return result
        except PeerClosed:
            # The server went away under this call. Give the adapter a moment
            # to learn why (the exit status), then name it.
            with anyio.move_on_after(1.0):
                await live.closed.wait()
            if live.retry_safe and retry:
                # A remote server forgot our session before doing anything with
                # the call: send it again once, on the new session.
                failed = False  # the retry counts for itself
                return await self.request(
                    peer, method, params, on_progress, wait, instance=instance, retry=False
                )
            raise UpstreamError(
                INTERNAL_ERROR,
                f"MCP server {self.name!r} failed during {method}: {live.cause}; "
                "it is being restarted, retry the call",
            ) from None
        except RPCError as exc:
            if self.trouble is not None and not isinstance(exc, UpstreamError):
                # The SDK's own words for an HTTP error say neither who nor what.
                raise UpstreamError(
                    exc.code, f"MCP server {self.name!r}: {self.trouble} ({exc.message})"
                ) from None
            raise
        finally:
            self.calls.record(method, time.perf_counter() - started, failed)
            if peer is not None:
                n = inst.inflight[peer] - 1
                if n:
                    inst.inflight[peer] = n
                else:
                    del inst.inflight[peer]
                    if inst.key.routed:
                        self.touch()  # a client may wait for this instance to be free

    async def _bounded_call(
        self, live: Live, method: str, params: Mapping[str, Any] | None, on_progress: Any
    ) -> dict[str, Any]:
        """A remote call, cut when it shows no sign of life for ``call_timeout`` seconds.

        Its progress notifications count as signs of life (the call always
        asks for them), so a long call that reports progress is never cut.
        """
        bound = self.config.call_timeout
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + bound

            async def alive(progress: float, total: float | None, message: str | None) -> None:
                scope.deadline = anyio.current_time() + bound
                if on_progress is not None:
                    await on_progress(progress, total, message)

            return await live.dispatcher.call(method, params, on_progress=alive)
        stalled = f"stalled: no answer to {method} for {bound:g} s (call_timeout)"
        self.remote_trouble(stalled)
        raise UpstreamError(
            INTERNAL_ERROR,
            f"MCP server {self.name!r} ({self.config.url}) {stalled}; the call was cancelled",
        )

    def remote_trouble(self, reason: str) -> None:
        """A remote server answered HTTP 5xx, or stalled: ``degraded`` while it lasts."""
        self.trouble = reason
        if self.state in ("ready", "degraded"):
            self._set_state("degraded", reason)

    def remote_fine(self) -> None:
        """A remote server answered again: no longer degraded for what `remote_trouble` saw."""
        if self.trouble is None:
            return
        self.trouble = None
        if self.state == "degraded":
            self._set_state("ready")

    async def notify(self, peer: Peer, method: str, params: Mapping[str, Any] | None) -> None:
        """Send a client's notification on to its instance (dropped while it is down)."""
        inst = self._assigned.get(peer, self.primary)
        live = inst.live
        if live is not None:
            await live.dispatcher.notify(method, params)

    # -- server-to-client requests ---------------------------------------------

    async def _rounds(
        self,
        inst: Instance,
        live: Live,
        *,
        method: str,
        params: Mapping[str, Any] | None,
        on_progress: Any,
        result: dict[str, Any],
    ) -> dict[str, Any]:
        """A 2026-07-28 server answered ``input_required``: ask the client, send the call again.

        Its requests go to the calling client as a handshake-era server's
        would (`client_request`): as requests to a handshake-era client, as
        rounds of its own to a stateless-era one.
        """
        for _ in range(MAX_ROUNDS):
            if result.get("resultType") != "input_required":
                return result
            answers: dict[str, Any] = {}
            asked = result.get("inputRequests")
            for key, request in (asked if isinstance(asked, dict) else {}).items():
                asked_method = request.get("method") if isinstance(request, dict) else None
                capability = _CAPABILITY_OF.get(str(asked_method))
                if capability is None:
                    raise UpstreamError(
                        INVALID_REQUEST, f"MCP server {self.name!r} asked for {asked_method!r}"
                    )
                answer = await self.client_request(
                    inst, str(asked_method), capability, request.get("params") or {}
                )
                if not isinstance(answer, dict):  # an ErrorData: the client could not answer
                    raise UpstreamError(answer.code, answer.message, answer.data)
                answers[key] = answer
            again: dict[str, Any] = {**(params or {}), "inputResponses": answers}
            if result.get("requestState") is not None:
                again["requestState"] = result["requestState"]
            result = await live.dispatcher.call(method, again, on_progress=on_progress)
        raise UpstreamError(
            INTERNAL_ERROR, f"MCP server {self.name!r} asked for input more than {MAX_ROUNDS} times"
        )

    async def client_request(
        self, instance: Instance, method: str, capability: str, params: dict[str, Any]
    ) -> Any:
        try:
            if capability == "roots":
                # Answered here: an instance's roots are its client's, by its key.
                instance.asked_roots = True
                return {"roots": instance.roots()}
            peer = instance.route_peer(method)
            if capability not in peer.client_capabilities:
                raise UpstreamError(
                    INVALID_REQUEST, f"the MCP client does not support {capability} ({method})"
                )
            return await peer.client_request(method, params)
        except UpstreamError as exc:
            import mcp_types  # loaded: the server asking is a live instance

            return mcp_types.ErrorData(code=exc.code, message=exc.message, data=exc.data)

    def server_event(self, instance: Instance, method: str, params: dict[str, Any]) -> None:
        """A notification from `instance`'s server for its clients."""
        if method == "notifications/resources/updated":
            targets: list[Peer] = list(self.subscribed(instance, str(params.get("uri"))))
        elif method == "notifications/message":
            level = params.get("level")
            targets = [p for p in self.clients_of(instance) if level_passes(level, p.log_level)]
        else:
            targets = self.clients_of(instance)
        for peer in targets:
            peer.upstream_event(self, method, params)

    def tell_restored(self, instance: Instance, reason: str | None) -> None:
        """Tell `instance`'s clients that its server restarted and what was restored."""
        kept = []
        if instance.level is not None:
            kept.append(f"log level {instance.level}")
        if instance.subscriptions:
            kept.append(f"{len(instance.subscriptions)} subscription(s)")
        text = f"MCP server {self.name!r} restarted" + (f" ({reason})" if reason else "")
        text += ("; restored " + " and ".join(kept)) if kept else ""
        params = {"level": "warning", "logger": "bicameral", "data": text}
        for peer in self.clients_of(instance):
            if level_passes("warning", peer.log_level):
                peer.upstream_event(self, "notifications/message", params)
