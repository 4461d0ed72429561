"""The store replicas share: ``[daemon.store] url = "redis://..."`` (off by default).

Without it every daemon keeps its state in its own state directory, which is
all one daemon needs. Replicas of a hosted front (docs/hosting.md) must share
a few things, and only those: the upstream OAuth tokens and the one refresh
in flight at a time (`bicameral.mcp`'s OAuth uses `SharedStore.get`,
`SharedStore.put` and `SharedStore.try_lock`). Redis is the store; nothing
here is a cluster of its own.

The client is ``redis``'s synchronous one, run in Trio worker threads
(``trio.to_thread``, abandoned on cancellation; every socket operation has a
timeout): the daemon runs on Trio, and ``redis``'s asyncio client needs an
asyncio loop. Calls are rare (a token read when a server connects, a write
and a lock per refresh, a ``PING`` every `PING_INTERVAL`), so a thread each
costs nothing that matters. ``redis`` is imported only when a store is
configured, never on the daemon's path to readiness: the first connection
is made by the watcher, after the daemon is ready.

An unreachable store does not stop the daemon: `SharedStore.problem` says
why (``/readyz`` and ``mcp ps`` show it), and what needs no store keeps
serving. What needs it waits for it or fails with that reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from bicameral.daemon._errors import ConfigError

__all__ = [
    "STORE_ENV",
    "STORE_KEYS",
    "SharedStore",
    "StoreError",
    "StoreSettings",
    "store_from_config",
]

logger = logging.getLogger("bicameral.daemon")

STORE_ENV = "BICAMERAL_STORE_URL"
"""The store's URL, for a platform that injects secrets as variables (wins over ``url``)."""
STORE_KEYS: dict[str, tuple[type, ...]] = {
    "url": (str,),
    "prefix": (str,),
    "lock_timeout": (int, float),
}
"""The keys of ``[daemon.store]``."""
SCHEMES = ("redis", "rediss", "unix")
PING_INTERVAL = 5.0
"""Seconds between two checks that the store answers."""
IO_TIMEOUT = 2.0
"""Seconds one store operation (connect, send, receive) may take."""

T = TypeVar("T")


class StoreError(Exception):
    """The store could not be used; the message says why, in one line."""


@dataclass(frozen=True)
class StoreSettings:
    """``[daemon.store]`` (docs/configuration.md)."""

    url: str
    #: Every key starts with it: deployments sharing one Redis stay apart.
    prefix: str = "bicameral"
    #: Seconds a refresh lock lives at most: a replica that dies holding it
    #: blocks the others this long, never longer.
    lock_timeout: float = 30.0

    @property
    def shown(self) -> str:
        """The URL without its password, for logs and ``mcp ps``."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


def store_from_config(
    config: Mapping[str, Any], path: Path | None, env_url: str | None = None
) -> StoreSettings | None:
    """``[daemon.store]`` with ``$BICAMERAL_STORE_URL`` (`env_url`); None when off.

    The store is on when the table has a ``url`` or the variable is set (an
    empty variable counts as unset). Raises `ConfigError` naming the file and
    the key for anything unknown or invalid.
    """
    where = str(path) if path is not None else "config.toml"
    section = config.get("daemon", {})
    table = section.get("store", {}) if isinstance(section, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [daemon.store] must be a table")
    for key, value in table.items():
        kinds = STORE_KEYS.get(key)
        if kinds is None:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon.store] (known: {', '.join(STORE_KEYS)})"
            )
        if not isinstance(value, kinds) or isinstance(value, bool):
            what = "a string" if kinds == (str,) else "a number of seconds"
            raise ConfigError(f"{where}: [daemon.store] {key} must be {what}, not {value!r}")
    url = env_url or table.get("url")
    if not url:
        return None
    source = f"${STORE_ENV}" if env_url else f"{where}: [daemon.store] url"
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{source} must be a redis://, rediss:// or unix:// URL, not {scheme or url!r}"
        )
    prefix = table.get("prefix", "bicameral")
    if not prefix or any(c.isspace() for c in prefix):
        raise ConfigError(f"{where}: [daemon.store] prefix must be a word, not {prefix!r}")
    lock_timeout = float(table.get("lock_timeout", 30.0))
    if not 1.0 <= lock_timeout <= 600.0:
        raise ConfigError(f"{where}: [daemon.store] lock_timeout must be 1 to 600 seconds")
    return StoreSettings(url=url, prefix=prefix, lock_timeout=lock_timeout)


class SharedStore:
    """Redis, for what replicas share; every method raises `StoreError` when it is down."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        #: Why the store cannot be used now (None: it answered last time).
        self.problem: str | None = "not connected yet"
        self._client: Any = None
        self._connecting = threading.Lock()  # worker threads make one client

    def key(self, *parts: str) -> str:
        """A key of this deployment: ``<prefix>:<part>:<part>...``."""
        return ":".join((self.settings.prefix, *parts))

    def status(self) -> dict[str, Any]:
        """What ``system.health`` and ``mcp ps`` show of the store."""
        state = "ok" if self.problem is None else "unreachable"
        return {"url": self.settings.shown, "state": state, "problem": self.problem}

    async def get(self, key: str) -> bytes | None:
        """The value at `key` (None: there is none)."""
        value: bytes | None = await self._call(lambda c: c.get(key))
        return value

    async def put(self, key: str, value: bytes) -> None:
        """Set `key` to `value`."""
        await self._call(lambda c: c.set(key, value))

    async def try_lock(self, name: str) -> Any:
        """The lock `name` if it was free (None if another holder has it).

        It expires after ``lock_timeout`` seconds whatever happens to its
        holder; release it with `unlock`.
        """

        def acquire(client: Any) -> Any:
            lock = client.lock(name, timeout=self.settings.lock_timeout, blocking=False)
            return lock if lock.acquire() else None

        return await self._call(acquire)

    async def unlock(self, lock: Any) -> None:
        """Release a lock `try_lock` gave; one that expired meanwhile is let be."""

        def release(client: Any) -> None:
            import redis.exceptions

            # Expired, and perhaps taken by another since: not ours to free.
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

        await self._call(release)

    async def watch(self) -> None:
        """Check the store every `PING_INTERVAL` seconds, for the daemon's life; log changes."""
        import trio

        while True:
            before = self.problem
            with contextlib.suppress(StoreError):  # `problem` says why
                await self._call(lambda c: c.ping())
            if self.problem != before:
                if self.problem is None:
                    logger.info("store %s: reachable", self.settings.shown)
                else:
                    logger.warning("store %s: unreachable: %s", self.settings.shown, self.problem)
            await trio.sleep(PING_INTERVAL)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(self, fn: Callable[[Any], T]) -> T:
        import trio

        def run() -> T:
            import redis.exceptions

            try:
                with self._connecting:
                    if self._client is None:
                        self._client = _connect(self.settings.url)
                return fn(self._client)
            except (redis.exceptions.RedisError, OSError) as exc:
                raise StoreError(_describe(exc)) from None

        try:
            result = await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        except StoreError as exc:
            self.problem = str(exc)
            raise
        self.problem = None
        return result


def _connect(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise StoreError(
            "[daemon.store] needs the redis package: pip install 'bicameral[store]'"
        ) from None
    return redis.Redis.from_url(
        url,
        socket_timeout=IO_TIMEOUT,
        socket_connect_timeout=IO_TIMEOUT,
        health_check_interval=30,
        client_name=f"bicameral-{os.getpid()}",
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
