"""Reload: re-read config.toml and apply the difference to the running daemon.

On ``SIGHUP`` and ``system.reload`` (``bicameral daemon reload``). The MCP
servers of the ``adapters`` subtree are compared by name and spec: new
ones start, removed ones stop, changed ones are replaced, equal ones keep
running (a failed one is retried). ``[daemon.http]`` is applied after the
servers; ``[daemon.limits]``, ``[daemon.store]`` and ``[daemon.audit]``
take effect at the next start (a warning says so).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bicameral.daemon._audit import audit_from_config
from bicameral.daemon._errors import DaemonError
from bicameral.daemon._http import http_from_config
from bicameral.daemon._plugin import load_config_file
from bicameral.daemon._settings import limits_from_config
from bicameral.daemon._store import store_from_config

if TYPE_CHECKING:
    from bicameral.daemon._daemon import RunningDaemon

__all__ = ["reload_config"]

logger = logging.getLogger("bicameral.daemon")


async def reload_config(daemon: RunningDaemon) -> dict[str, list[str]]:
    """Re-read config.toml and apply the difference to the ``adapters`` subtree.

    An invalid file raises :class:`ConfigError` and changes nothing.
    Specs are compared by name and then by value: new names are started
    (last in the start order), missing ones deleted, changed ones
    replaced in place (`Supervisor.replace_child`), equal ones left
    running.
    """
    assert daemon.reload_lock is not None and daemon.adapters is not None
    async with daemon.reload_lock:
        daemon.notifier.reloading()
        try:
            daemon.check_home_unchanged()
            config, path = load_config_file(daemon.paths, daemon.home_fd)
            if limits_from_config(config, path, daemon.options.limits) != daemon.options.limits:
                logger.warning(
                    "[daemon.limits] changed: the new limits apply when the daemon restarts"
                )
            # Validated like the rest (a bad table rejects the reload),
            # applied after the servers (`apply_http`).
            wanted_http = http_from_config(config, path, daemon.options.http)
            store = store_from_config(config, path, daemon.options.store_url)
            if store != (daemon.store.settings if daemon.store is not None else None):
                logger.warning("[daemon.store] changed: the store changes when the daemon restarts")
            if audit_from_config(config, path) != daemon.audit_settings():
                logger.warning(
                    "[daemon.audit] changed: the audit log changes when the daemon restarts"
                )
            plugins = daemon.plugins.reconfigure(config, path)
            specs = plugins.adapter_specs()
            current = {child.name: child.spec for child in daemon.adapters.children}
            wanted = {spec.name: spec for spec in specs}
            result: dict[str, list[str]] = {"added": [], "removed": [], "restarted": []}
            failed: list[str] = []
            for name in current:
                if name not in wanted:
                    await daemon.adapters.delete_child(name)
                    result["removed"].append(name)
            for spec in specs:
                old = current.get(spec.name)
                if old is not None and old == spec:
                    if daemon.adapters.child(spec.name).state != "failed":
                        continue
                    # Unchanged but given up on: a reload retries it (SPEC §5).
                    try:
                        await daemon.adapters.restart_child(spec.name)
                    except Exception as exc:
                        logger.error("reload: retrying %r failed: %r", spec.name, exc)
                        failed.append(spec.name)
                        continue
                    result["restarted"].append(spec.name)
                    continue
                try:
                    if old is not None:
                        await daemon.adapters.replace_child(spec)
                    else:
                        await daemon.adapters.start_child(spec)
                except Exception as exc:
                    logger.error("reload: adapter %r failed to start: %r", spec.name, exc)
                    failed.append(spec.name)
                    continue
                result["restarted" if old is not None else "added"].append(spec.name)
            daemon.plugins = plugins
            daemon.adapter_specs = specs
            try:
                change = await daemon.apply_http(wanted_http)
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
            result["servers"] = daemon.adapter_counts()  # type: ignore[assignment]
            return result
        finally:
            daemon.notifier.reloaded()
