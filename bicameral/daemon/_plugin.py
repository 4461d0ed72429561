"""The plugin host: how layers above the daemon put children and methods into it.

The daemon cannot import :mod:`bicameral.mcp` (layers import only downward),
so the MCP layer, and anything else, plugs in through the entry point group
``bicameral.plugins``. Each entry point names an object satisfying
:class:`DaemonPlugin`. At startup and on every reload the daemon reads
``config.toml``, lets each plugin validate its part (:meth:`DaemonPlugin.load_config`)
and asks it for the children of the ``adapters`` subtree
(:meth:`DaemonPlugin.adapter_specs`). Once, at startup, it hands each plugin a
:class:`DaemonHost` to register RPC methods and ``system.attach`` modes.

Finding entry points: ``importlib.metadata.entry_points()`` parses every
installed distribution's metadata, about 35 ms here, which is an eighth of
the ``daemon start`` budget. :func:`find_entry_points` reads only the
``entry_points.txt`` files of ``*.dist-info`` / ``*.egg-info`` directories on
``sys.path``, with the same precedence (the first distribution of a name on
``sys.path`` wins), and falls back to ``importlib.metadata`` for anything it
cannot read that way (zipped eggs, custom finders).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bicameral.daemon._errors import ConfigError
from bicameral.daemon._files import read_regular

if TYPE_CHECKING:
    import trio

    from bicameral.daemon._http import HttpListener
    from bicameral.daemon._paths import DaemonPaths
    from bicameral.daemon._store import SharedStore
    from bicameral.protocol import Connection, Dispatcher, Limits
    from bicameral.supervisor import ChildSpec, Supervisor

__all__ = [
    "PLUGIN_GROUP",
    "AttachHandler",
    "DaemonHost",
    "DaemonPlugin",
    "LoadedPlugins",
    "find_entry_points",
    "load_config_file",
    "load_plugins",
]

PLUGIN_GROUP = "bicameral.plugins"

logger = logging.getLogger("bicameral.daemon")

AttachHandler = Callable[["Connection", dict[str, Any]], Awaitable[Any]]
"""``handler(conn, params)`` for ``system.attach`` with its mode; its result is
merged into the attach result, and it normally calls ``conn.upgrade(...)``."""


@runtime_checkable
class DaemonPlugin(Protocol):
    """What an entry point in ``bicameral.plugins`` names (docs/architecture.md)."""

    name: str

    def load_config(self, config: Mapping[str, Any], path: Path | None) -> object:
        """Validate this plugin's part of config.toml.

        Raise ConfigError(msg) naming the file, the key and the field.
        """
        ...

    def adapter_specs(self, loaded: object) -> list[ChildSpec]:
        """Children of the daemon's ``adapters`` subtree, in start order.

        Specs that compare equal across a reload are left running.
        """
        ...

    def install(self, host: DaemonHost) -> None:
        """Register RPC methods and attach modes."""
        ...


class DaemonHost:
    """What a plugin may touch in the running daemon.

    ``dispatcher`` (add RPC methods), ``adapters`` (the live ``adapters``
    subtree), :meth:`snapshot` (the whole tree), :meth:`add_attach_mode`,
    :meth:`start_soon` (a background task for the daemon's life), ``paths``,
    ``pid`` and ``started_at`` (epoch seconds).
    """

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        adapters: Supervisor,
        root: Supervisor,
        paths: DaemonPaths,
        pid: int,
        started_at: float,
        nursery: trio.Nursery | None = None,
        limits: Limits | None = None,
        http: HttpListener | None = None,
        state_dir: Path | None = None,
        audit: Callable[[Mapping[str, Any]], None] | None = None,
        store: SharedStore | None = None,
    ) -> None:
        from bicameral.protocol import Limits as _Limits

        self._nursery = nursery
        #: Set once the daemon is ready (descriptor published, answering):
        #: a plugin's adapters may wait for it before costly work, so that
        #: nothing of theirs delays readiness.
        self.ready = _ready_event()
        #: Set when a graceful stop of the daemon begins, before the tree is
        #: stopped (in reverse order, one child at a time): a plugin may end
        #: slow external work at once, all together (as systemd signals a
        #: whole control group), so that the ordered stop finds it done.
        self.stopping = _ready_event()
        #: The protocol limits the daemon runs with (``[daemon.limits]``).
        self.limits = limits if limits is not None else _Limits()
        self.dispatcher = dispatcher
        self.adapters = adapters
        self.paths = paths
        #: The state directory to make files in (OAuth tokens...): on Linux
        #: its path through the descriptor the daemon holds, so it stays the
        #: directory the daemon started in even if ``paths.home`` is renamed
        #: (SPEC §4).
        self.state_dir = state_dir if state_dir is not None else paths.home
        self.pid = pid
        self.started_at = started_at
        self._root = root
        self.attach_modes: dict[str, AttachHandler] = {}
        #: The HTTP listener, when one is configured (``[daemon.http]``).
        self.http = http
        #: Writes one entry to the audit log, when ``[daemon.audit] enabled``
        #: (`bicameral.daemon._audit`): the MCP layer calls it once per ``tools/call``.
        self.audit = audit
        #: The store replicas share, when ``[daemon.store]`` names one
        #: (`bicameral.daemon._store`): the MCP layer keeps OAuth tokens there.
        self.store = store
        self._http_waiting: list[Callable[[HttpListener], None]] = []

    def on_http(self, callback: Callable[[HttpListener], None]) -> None:
        """Call `callback(listener)` once there is an HTTP listener.

        At once when the daemon started with one; else when a reload (or
        ``daemon start --http``) first opens it. The listener object then
        stays for the daemon's life, however often it moves or pauses, so
        what the callback mounts stays mounted.
        """
        if self.http is not None:
            callback(self.http)
        else:
            self._http_waiting.append(callback)

    def set_http(self, listener: HttpListener) -> None:
        """The daemon's: the listener was just made; hand it to those waiting."""
        self.http = listener
        waiting, self._http_waiting = self._http_waiting, []
        for callback in waiting:
            callback(listener)

    def add_http_app(self, prefix: str, app: Callable[..., Awaitable[None]]) -> None:
        """Serve the ASGI `app` under `prefix` on the HTTP listener (when there is one).

        The listener has already checked ``Host``, ``Origin`` and the token;
        the app sees ``root_path`` set to `prefix`.
        """
        if self.http is not None:
            self.http.mounts[prefix] = app

    def add_metrics(self, collector: Any) -> None:
        """Add a ``prometheus_client`` collector to ``/metrics`` (when there is a listener)."""
        if self.http is not None:
            self.http.collectors.append(collector)

    def add_warming(self, check: Callable[[], str | None]) -> None:
        """Hold ``/readyz`` at 503 while `check` returns a reason (the plugin is warming up).

        A platform sends a replica traffic once it is ready: a plugin whose
        work is not ready yet (servers in their first start) says so here.
        """
        if self.http is not None:
            self.http.warming.append(check)

    def on_http_drain(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the listener begins to drain (to end long-lived streams)."""
        if self.http is not None:
            self.http.on_drain.append(callback)

    def snapshot(self) -> dict[str, Any]:
        """The whole supervisor tree's snapshot (SPEC §3 shape)."""
        return self._root.snapshot()

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` in the background until the daemon stops.

        For a plugin's own housekeeping (timers, watchers). It is cancelled
        when the daemon exits; an exception from it is logged, never fatal.
        """
        if self._nursery is None:
            raise RuntimeError("DaemonHost.start_soon: the daemon is not running")

        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception:
                logger.exception("a plugin's background task failed")

        self._nursery.start_soon(guarded)

    def add_attach_mode(self, mode: str, handler: AttachHandler) -> None:
        """Route ``system.attach`` with ``{"mode": mode}`` to ``handler``."""
        if mode == "rpc":
            raise ValueError("the 'rpc' attach mode is the daemon's own")
        if mode in self.attach_modes:
            raise ValueError(f"attach mode {mode!r} is already registered")
        self.attach_modes[mode] = handler


def _ready_event() -> Any:
    import trio

    try:
        return trio.Event()
    except RuntimeError:  # pragma: no cover - built outside a Trio run
        return None


# --- entry points ----------------------------------------------------------


class EntryPoint:
    """``name = module:attr`` from one distribution's ``entry_points.txt``."""

    __slots__ = ("dist", "name", "value")

    def __init__(self, name: str, value: str, dist: str) -> None:
        self.name = name
        self.value = value
        self.dist = dist

    def __repr__(self) -> str:
        return f"EntryPoint({self.name!r}, {self.value!r}, dist={self.dist!r})"

    def load(self) -> Any:
        import importlib

        module_name, _, attrs = self.value.partition(":")
        attrs = attrs.split("[", 1)[0].strip()  # drop "[extras]"
        obj: Any = importlib.import_module(module_name.strip())
        for attr in filter(None, attrs.split(".")):
            obj = getattr(obj, attr)
        return obj


_DIST_DIR = re.compile(r"^(?P<name>[^-]+)(?:-[^-]*)?\.(?:dist|egg)-info$", re.IGNORECASE)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _parse_group(text: str, group: str, dist: str) -> list[EntryPoint]:
    found: list[EntryPoint] = []
    in_group = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            in_group = line == f"[{group}]"
            continue
        if in_group:
            name, sep, value = line.partition("=")
            if sep:
                found.append(EntryPoint(name.strip(), value.strip(), dist))
    return found


def find_entry_points(group: str = PLUGIN_GROUP, path: list[str] | None = None) -> list[EntryPoint]:
    """Entry points of ``group`` among the distributions installed on ``path``."""
    seen: set[str] = set()
    result: list[EntryPoint] = []
    for entry in sys.path if path is None else path:
        directory = entry or "."
        if not os.path.isdir(directory):
            if os.path.isfile(directory):  # a zip on sys.path: let importlib do it
                return _importlib_entry_points(group)
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            match = _DIST_DIR.match(name)
            if match is None:
                continue
            dist = _normalize(match["name"])
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if f"[{group}]" in text:
                result.extend(_parse_group(text, group, dist))
    return result


def _importlib_entry_points(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    return [
        EntryPoint(ep.name, ep.value, getattr(ep.dist, "name", "") or "")
        for ep in entry_points(group=group)
    ]


class LoadedPlugins:
    """The plugins found at startup, with each one's validated configuration."""

    def __init__(self, plugins: list[DaemonPlugin], configs: dict[str, object]) -> None:
        self.plugins = plugins
        self.configs = configs

    def adapter_specs(self) -> list[ChildSpec]:
        """Every plugin's adapter specs, in plugin order; names must be unique."""
        specs: list[ChildSpec] = []
        owners: dict[str, str] = {}
        for plugin in self.plugins:
            try:
                plugin_specs = list(plugin.adapter_specs(self.configs[plugin.name]))
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"plugin {plugin.name!r}: adapter_specs failed: {exc!r}") from exc
            for spec in plugin_specs:
                if spec.name in owners:
                    raise ConfigError(
                        f"adapter name {spec.name!r} is used by both plugin "
                        f"{owners[spec.name]!r} and plugin {plugin.name!r}"
                    )
                owners[spec.name] = plugin.name
                specs.append(spec)
        return specs

    def reconfigure(self, config: Mapping[str, Any], path: Path | None) -> LoadedPlugins:
        """Validate ``config`` with every plugin again; the same plugins, new configs."""
        return LoadedPlugins(self.plugins, _validate(self.plugins, config, path))


def load_config_file(
    paths: DaemonPaths, home_fd: int | None = None
) -> tuple[dict[str, Any], Path | None]:
    """Read ``config.toml`` (or ``--config``): its table and its path.

    A missing default file means an empty configuration; a missing
    ``--config`` file, unreadable or invalid TOML is a :class:`ConfigError`
    naming the file (and the line, from ``tomllib``).

    `home_fd`: the daemon's held descriptor of its state dir; the default
    ``config.toml`` is then opened relative to it (``openat``, no symlink
    followed), never through a path someone could have swapped.
    """
    path = paths.config
    in_home = home_fd is not None and path.parent == paths.home
    try:
        raw = read_regular(path, dir_fd=home_fd if in_home else None)
    except FileNotFoundError:
        if paths.config_explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}, None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except OSError as exc:
        if in_home and exc.errno == errno.ELOOP:
            raise ConfigError(
                f"config file {path} is a symlink: the daemon reads only a regular file in "
                "its state dir (use --config to name a file elsewhere)"
            ) from None
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid UTF-8 ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return data, path


def _validate(
    plugins: list[DaemonPlugin], config: Mapping[str, Any], path: Path | None
) -> dict[str, object]:
    known = ["daemon", *(plugin.name for plugin in plugins)]
    for key in config:
        if key not in known:
            # A typo'd or misplaced table ([mcpServers.x], [servers.x], a
            # top-level `foo = 1`) would otherwise start a daemon with nothing
            # configured and no word about it.
            import difflib

            close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.5)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise ConfigError(
                f"{path or 'config.toml'}: unknown table or key {key!r} at the top level "
                f"(known: {', '.join(f'[{k}]' for k in known)}){hint}"
            )
    configs: dict[str, object] = {}
    for plugin in plugins:
        try:
            configs[plugin.name] = plugin.load_config(config, path)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"plugin {plugin.name!r} rejected {path}: {exc!r}") from exc
    return configs


def load_plugins(
    config: Mapping[str, Any],
    path: Path | None,
    *,
    entry_points: list[EntryPoint] | None = None,
) -> LoadedPlugins:
    """Load every ``bicameral.plugins`` entry point and validate ``config`` with each.

    A plugin that fails to import, is not a :class:`DaemonPlugin` or whose
    name is taken makes this raise :class:`ConfigError`, and so does an
    invalid configuration: ``serve`` reports it and exits before readiness.
    """
    plugins: list[DaemonPlugin] = []
    names: set[str] = set()
    for ep in find_entry_points() if entry_points is None else entry_points:
        try:
            obj = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"plugin {ep.name!r} ({ep.value}) from {ep.dist or '?'} failed to load: {exc!r}"
            ) from exc
        if isinstance(obj, type):
            obj = obj()
        if not isinstance(obj, DaemonPlugin):
            raise ConfigError(f"plugin {ep.name!r} ({ep.value}) is not a DaemonPlugin")
        if obj.name in names:
            raise ConfigError(f"two plugins are named {obj.name!r}")
        names.add(obj.name)
        plugins.append(obj)
    return LoadedPlugins(plugins, _validate(plugins, config, path))
