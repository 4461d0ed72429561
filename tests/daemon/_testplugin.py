"""A `DaemonPlugin` for the lifecycle tests, installed per test as a fake distribution.

Configuration (``config.toml``)::

    [test]
    invalid = true                  # load_config raises ConfigError
    [test.adapters.NAME]
    stop_delay = 2.0                # seconds its graceful stop takes
    broken = true                   # crashes at once on start (before started())

It also registers the RPC methods ``test.echo`` and ``test.crash`` (from then
on every adapter crashes as soon as it starts, so the tree gives up and the
daemon exits non-zero) and the attach mode ``echo``, which upgrades the
connection to a raw byte echo.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from bicameral.daemon import ConfigError, DaemonHost
from bicameral.supervisor import ChildSpec, current_child

CRASH = {"now": False, "event": None}


async def adapter(
    stop_delay: float, broken: bool, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
) -> None:
    if broken:
        raise RuntimeError("broken adapter")
    task_status.started({"stop_delay": stop_delay})
    if CRASH["now"]:
        raise RuntimeError("crashing on request")
    if CRASH["event"] is None:
        CRASH["event"] = trio.Event()
    crash = CRASH["event"]
    async with trio.open_nursery() as nursery:

        async def crash_when_told() -> None:
            await crash.wait()
            raise RuntimeError("crashing on request")

        nursery.start_soon(crash_when_told)
        await current_child().stopping.wait()
        nursery.cancel_scope.cancel()
    await trio.sleep(stop_delay)  # a graceful stop that takes its time


class TestPlugin:
    name = "test"

    def load_config(self, config: Mapping[str, Any], path: Path | None) -> object:
        section = config.get("test", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [test] must be a table")
        if section.get("invalid"):
            raise ConfigError(f"{path}: test.invalid: this configuration is invalid on purpose")
        adapters = section.get("adapters", {})
        return {
            name: (float(spec.get("stop_delay", 0.0)), bool(spec.get("broken", False)))
            for name, spec in adapters.items()
        }

    def adapter_specs(self, loaded: object) -> list[ChildSpec]:
        assert isinstance(loaded, dict)
        return [ChildSpec(name, adapter, args=args, shutdown=60.0) for name, args in loaded.items()]

    def install(self, host: DaemonHost) -> None:
        async def echo(params: Any, conn: Any) -> Any:
            return {"params": params, "pid": host.pid}

        async def crash(params: Any, conn: Any) -> Any:
            CRASH["now"] = True
            if CRASH["event"] is not None:
                CRASH["event"].set()
            return "crashing"

        host.dispatcher.add("test.echo", echo)
        host.dispatcher.add("test.crash", crash)
        host.add_attach_mode("echo", self._attach_echo)

    async def _attach_echo(self, conn: Any, params: dict[str, Any]) -> Any:
        async def relay(stream: trio.SocketStream, buffered: bytes) -> None:
            if buffered:
                await stream.send_all(buffered)
            async for chunk in stream:
                await stream.send_all(chunk)

        conn.upgrade(relay)
        return {"echo": True}


plugin = TestPlugin()
