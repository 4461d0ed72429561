"""A `DaemonPlugin` for the hardening tests: a slow method that counts concurrency.

Installed per test as a fake distribution (see ``Home.install_probe_plugin``).
``probe.wait {"seconds": s}`` sleeps ``s`` seconds (at most 30) and returns;
``probe.peak`` returns the most ``probe.wait`` calls ever running at once on
one connection, so a test can see the daemon's in-flight limit at work.

``[probe] start_delay = S`` in config.toml adds an adapter that takes ``S``
seconds to start: the daemon is not ready before, which widens the window
in which tests interrupt a start (without the cost of a real MCP server).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from bicameral.daemon import DaemonHost
from bicameral.supervisor import ChildSpec, current_child


async def slow_start(
    delay: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await trio.sleep(delay)
    task_status.started()
    await current_child().stopping.wait()


class ProbePlugin:
    name = "probe"

    def __init__(self) -> None:
        self.active: dict[int, int] = {}
        self.peak = 0

    def load_config(self, config: Mapping[str, Any], path: Path | None) -> object:
        section = config.get("probe", {})
        return float(section.get("start_delay", 0.0)) if isinstance(section, dict) else 0.0

    def adapter_specs(self, loaded: object) -> list[ChildSpec]:
        assert isinstance(loaded, float)
        return [ChildSpec("slow-start", slow_start, args=(loaded,))] if loaded else []

    def install(self, host: DaemonHost) -> None:
        async def wait(params: Any, conn: Any) -> Any:
            key = id(conn)
            self.active[key] = self.active.get(key, 0) + 1
            self.peak = max(self.peak, self.active[key])
            try:
                seconds = params.get("seconds", 0.1) if isinstance(params, dict) else 0.1
                await trio.sleep(min(float(seconds), 30.0))
            finally:
                self.active[key] -= 1
            return "waited"

        async def peak(params: Any, conn: Any) -> Any:
            await trio.lowlevel.checkpoint()
            return self.peak

        host.dispatcher.add("probe.wait", wait)
        host.dispatcher.add("probe.peak", peak)


plugin = ProbePlugin()
