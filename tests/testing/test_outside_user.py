"""The pytest plugin as an outside project uses it: its own tests, its own pytest run.

The project files (project_adapter.py, project_daemon.py) are copied into a
fresh directory with only a pytest.ini (no conftest.py, no trio_mode) and run
by a separate ``python -m pytest``, which finds the fixtures through the
``pytest11`` entry point, as any project that installed bicameral would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bicameral.daemon._identity import probe

HERE = Path(__file__).parent
LIGHTSERVER = HERE.parent / "mcp" / "servers" / "lightserver.py"


def run_project(
    tmp_path: Path, *files: str, args: tuple[str, ...] = ()
) -> tuple[dict[str, str], str]:
    """Run ``files`` as a project's test suite; outcomes by test name, and the output."""
    for name in files:
        shutil.copy(HERE / f"{name}.py", tmp_path / f"test_{name.removeprefix('project_')}.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BICAMERAL_"))}
    env["RECORD"] = str(tmp_path / "record.jsonl")
    env["TESTSERVER"] = str(LIGHTSERVER)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    outcomes = {
        m.group(2): m.group(1)
        for m in re.finditer(r"^(PASSED|FAILED|SKIPPED|ERROR) \S+::(\w+)", proc.stdout, re.M)
    }
    return outcomes, proc.stdout + proc.stderr


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its (non-test) parent has not reaped yet."""
    info = probe(pid)
    return info is None or info.zombie


def records(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_supervisor_fixture_tests_an_adapter(tmp_path: Path) -> None:
    outcomes, output = run_project(tmp_path, "project_adapter")
    assert outcomes == {
        "test_adapter_is_restarted_after_a_crash": "PASSED",
        "test_adapter_that_never_starts": "PASSED",
        "test_adapter_crash_loop_fails_the_test": "FAILED",
    }, output
    # The crash loop is reported as the supervisor giving up, with its cause.
    assert "SupervisorCrashed: supervisor 'test' stopped on its own" in output
    assert "RestartIntensityExceeded" in output


def test_daemon_fixture_runs_a_real_daemon_and_leaves_nothing(tmp_path: Path) -> None:
    if not LIGHTSERVER.exists():
        pytest.skip("tests/mcp/servers/lightserver.py is not there")
    outcomes, output = run_project(tmp_path, "project_daemon")
    assert outcomes == {
        "test_daemon_answers": "PASSED",
        "test_configured_server_through_the_bridge": "PASSED",
        "test_failure_shows_the_daemon_log": "FAILED",
        "test_start_failure_shows_why": "FAILED",
    }, output
    seen = records(tmp_path)
    assert len(seen) == 3, output
    for entry in seen:
        assert gone(int(str(entry["pid"]))), f"daemon left running: {entry}"
        assert not os.path.lexists(str(entry["socket"]))
        assert not os.path.lexists(str(entry["home"]))
    upstream = next(int(str(e["upstream"])) for e in seen if "upstream" in e)
    assert gone(upstream), "the MCP server outlived its daemon"
    # The failing test's report carries its daemon's log.
    failing = seen[-1]
    section = f"bicameral daemon log ({failing['home']}/daemon.log)"
    assert section in output
    assert f"daemon pid {failing['pid']} ready on {failing['socket']}" in output
    # A daemon that cannot start: the reason in the error and in the attached log.
    typo = "[mcp.servers.typo] unknown key 'comand'"
    assert re.search(
        rf"E +bicameral\.daemon\.\w+\.StartError: \S+/config\.toml: {re.escape(typo)}", output
    ), output
    assert re.search(
        rf"ERROR bicameral\.daemon\[\d+\]: cannot start: \S+/config\.toml: {re.escape(typo)}",
        output,
    ), output
    assert "env = {" not in output  # the daemon's environment is not dumped into the report
    # ...and only the failing tests carry a log.
    assert output.count("bicameral daemon log (") == 2


def test_supervisor_fixture_skips_without_pytest_trio(tmp_path: Path) -> None:
    _, output = run_project(tmp_path, "project_adapter", args=("-p", "no:trio", "-k", "restarted"))
    assert "1 skipped, 2 deselected" in output, output
    assert "bicameral_supervisor needs an async test run by pytest-trio" in output


def test_importing_the_plugin_imports_neither_trio_nor_mcp() -> None:
    code = (
        "import sys, bicameral.testing.plugin, bicameral.testing;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'anyio', 'mcp')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.strip() == "[]"
