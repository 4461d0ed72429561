"""Strategies and restart types: who is restarted after which exit."""

from __future__ import annotations

import logging

import pytest
import trio

from bicameral.supervisor import ChildSpec, Restart, Strategy, Supervisor

from .conftest import Ctl, running, settle


def tree(
    strategy: Strategy, log: list[str], names: str = "abc"
) -> tuple[Supervisor, dict[str, Ctl]]:
    ctls = {n: Ctl(n, log) for n in names}
    sup = Supervisor(
        "root",
        [ChildSpec(n, c) for n, c in ctls.items()],
        strategy=strategy,
        max_restarts=10,
    )
    return sup, ctls


async def test_one_for_one_restarts_only_the_failed_child(log: list[str]) -> None:
    sup, c = tree(Strategy.ONE_FOR_ONE, log)
    async with running(sup):
        log.clear()
        c["b"].crash()
        await settle()
        assert log == ["stop b", "start b", "ready b"]
        assert [c[n].runs for n in "abc"] == [1, 2, 1]
        assert [ch["restarts"] for ch in sup.snapshot()["children"]] == [0, 1, 0]


async def test_one_for_all_stops_all_in_reverse_then_starts_all_in_order(log: list[str]) -> None:
    sup, c = tree(Strategy.ONE_FOR_ALL, log)
    async with running(sup):
        log.clear()
        c["b"].crash()
        await settle()
        assert log == [
            "stop b",  # the crash itself
            "stop c",
            "stop a",
            "start a",
            "ready a",
            "start b",
            "ready b",
            "start c",
            "ready c",
        ]
        assert [c[n].runs for n in "abc"] == [2, 2, 2]
        assert all(ch["state"] == "running" for ch in sup.snapshot()["children"])


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(log: list[str]) -> None:
    sup, c = tree(Strategy.REST_FOR_ONE, log, "abcd")
    async with running(sup):
        log.clear()
        c["b"].crash()
        await settle()
        assert log == [
            "stop b",
            "stop d",
            "stop c",
            "start b",
            "ready b",
            "start c",
            "ready c",
            "start d",
            "ready d",
        ]
        assert [c[n].runs for n in "abcd"] == [1, 2, 2, 2]


async def test_one_for_all_event_counts_once_toward_intensity(log: list[str]) -> None:
    # Three children restarted by one event is one restart (OTP): with
    # max_restarts=1 the first event is fine and the second is one too many.
    ctls = {n: Ctl(n, log) for n in "abc"}
    sup = Supervisor(
        "root",
        [ChildSpec(n, c) for n, c in ctls.items()],
        strategy=Strategy.ONE_FOR_ALL,
        max_restarts=1,
    )
    with pytest.RaisesGroup(pytest.RaisesExc(Exception, match="more than 1 restarts")):
        async with running(sup):
            ctls["a"].crash()
            await settle()
            assert sup.state == "running"
            assert [ctls[n].runs for n in "abc"] == [2, 2, 2]
            ctls["c"].crash()
            await trio.sleep_forever()


@pytest.mark.parametrize("how", ["crash", "exit"])
async def test_permanent_is_restarted_after_any_exit(how: str) -> None:
    ctl = Ctl("p")
    sup = Supervisor("root", [ChildSpec("p", ctl, restart=Restart.PERMANENT)])
    async with running(sup):
        getattr(ctl, how)()
        await settle()
        assert ctl.runs == 2
        entry = sup.snapshot()["children"][0]
        assert entry["state"] == "running"
        assert entry["last_exit"]["reason"] == ("error" if how == "crash" else "normal")


async def test_transient_is_restarted_after_a_crash_only() -> None:
    ctl = Ctl("t")
    sup = Supervisor("root", [ChildSpec("t", ctl, restart=Restart.TRANSIENT)])
    async with running(sup):
        ctl.crash()
        await settle()
        assert ctl.runs == 2
        ctl.exit()
        await settle()
        assert ctl.runs == 2
        entry = sup.snapshot()["children"][0]
        assert entry["state"] == "stopped"
        assert entry["restarts"] == 1
        assert entry["last_exit"]["reason"] == "normal"


@pytest.mark.parametrize("how", ["crash", "exit"])
async def test_temporary_is_never_restarted_and_leaves_the_snapshot(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctl = Ctl("tmp")
    keep = Ctl("keep")
    sup = Supervisor(
        "root",
        [ChildSpec("tmp", ctl, restart=Restart.TEMPORARY), ChildSpec("keep", keep)],
    )
    async with running(sup):
        with caplog.at_level(logging.INFO, logger="bicameral.supervisor"):
            getattr(ctl, how)()
            await settle()
        assert ctl.runs == 1
        assert [ch["name"] for ch in sup.snapshot()["children"]] == ["keep"]
        records = [r for r in caplog.records if "'tmp'" in r.getMessage()]
        assert records, "a temporary child's exit must be logged"
        assert records[0].name == "bicameral.supervisor"
        assert records[0].levelno == (logging.ERROR if how == "crash" else logging.INFO)


async def test_crash_is_one_error_line_with_the_traceback_at_info_and_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctl = Ctl("w")
    sup = Supervisor("root", [ChildSpec("w", ctl)])
    async with running(sup):
        with caplog.at_level(logging.INFO, logger="bicameral.supervisor"):
            ctl.crash(ValueError("bad value"))
            await settle()
        crash = [r for r in caplog.records if "crash" in r.getMessage()]
        error, traceback = crash
        assert error.levelno == logging.ERROR and error.exc_info is None
        assert error.getMessage().endswith("crashed: ValueError('bad value')")
        assert traceback.levelno == logging.INFO
        assert traceback.exc_info is not None and isinstance(traceback.exc_info[1], ValueError)
        last = sup.snapshot()["children"][0]["last_exit"]
        assert last["reason"] == "error"
        assert last["error"] == "ValueError('bad value')"
        assert isinstance(last["at"], float)


async def test_group_restart_removes_temporary_siblings(log: list[str]) -> None:
    # OTP deletes a temporary child that a ONE_FOR_ALL restart terminated.
    a, t = Ctl("a", log), Ctl("t", log)
    sup = Supervisor(
        "root",
        [ChildSpec("a", a), ChildSpec("t", t, restart=Restart.TEMPORARY)],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with running(sup):
        a.crash()
        await settle()
        assert (a.runs, t.runs) == (2, 1)
        assert [ch["name"] for ch in sup.snapshot()["children"]] == ["a"]
