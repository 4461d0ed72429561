"""bicameral's own fixtures used directly by this repository's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from bicameral.daemon import ConfigError
from bicameral.daemon._identity import probe
from bicameral.supervisor import ChildSpec, Strategy, Supervisor, current_child
from bicameral.testing import BicameralDaemon, SupervisorFactory

LIGHTSERVER = str(Path(__file__).parent.parent / "mcp" / "servers" / "lightserver.py")


async def test_supervisor_fixture_starts_a_prebuilt_supervisor(
    bicameral_supervisor: SupervisorFactory,
) -> None:
    started: list[str] = []

    async def worker(name: str, *, task_status: trio.TaskStatus[str]) -> None:
        started.append(name)
        task_status.started(name)
        await current_child().stopping.wait()

    specs = [ChildSpec(n, worker, args=(n,)) for n in ("a", "b")]
    built = Supervisor("prebuilt", specs, strategy=Strategy.ONE_FOR_ALL)
    sup = await bicameral_supervisor(built)
    assert sup is built
    assert started == ["a", "b"]  # both ready when the call returns
    snapshot = sup.snapshot()
    assert snapshot["strategy"] == "one_for_all"
    assert [c["started_value"] for c in snapshot["children"]] == ["a", "b"]
    with pytest.raises(TypeError):
        await bicameral_supervisor(built, max_restarts=1)


def test_daemon_fixture_reload_stop_and_start_again(bicameral_daemon: BicameralDaemon) -> None:
    first = bicameral_daemon.pid
    assert bicameral_daemon.call("adapters.list") == []
    bicameral_daemon.configure({"extra": {"command": sys.executable, "args": [LIGHTSERVER]}})
    assert bicameral_daemon.reload()["added"] == ["extra"]
    assert [a["name"] for a in bicameral_daemon.call("adapters.list")] == ["extra"]
    assert bicameral_daemon.stop()["status"] == "stopped"
    info = probe(first)
    assert info is None or info.zombie
    assert not bicameral_daemon.paths.descriptor.exists()
    assert bicameral_daemon.pid != first  # a later use starts a new daemon


def test_daemon_fixture_validates_the_configuration(bicameral_daemon: BicameralDaemon) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'comand'"):
        bicameral_daemon.configure({"bad": {"comand": "x"}})
    assert not bicameral_daemon.config_path.exists()
    assert not bicameral_daemon.running


def test_daemon_fixture_on_the_tcp_transport(bicameral_daemon: BicameralDaemon) -> None:
    assert bicameral_daemon.start(transport="tcp")["transport"] == "tcp"
    assert bicameral_daemon.descriptor.address is not None
    assert bicameral_daemon.call("system.health")["pid"] == bicameral_daemon.pid
    with pytest.raises(AttributeError, match="TCP"):
        _ = bicameral_daemon.socket_path
