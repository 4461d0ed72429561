"""The CLI fast path accepts exactly its command lines and declines everything else."""

from __future__ import annotations

from typing import Any

import pytest

from bicameral.cli import _fast


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, dict[str, Any]]]:
    seen: list[tuple[str, str | None, dict[str, Any]]] = []

    def fake(name: str) -> Any:
        def run(home: str | None, options: dict[str, Any]) -> int:
            seen.append((name, home, options))
            return 7

        return run

    table = {
        words: (spec, fake(" ".join(words))) for words, (spec, _) in _fast.FAST_COMMANDS.items()
    }
    monkeypatch.setattr(_fast, "FAST_COMMANDS", table)
    return seen


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["daemon", "start"], ("daemon start", None, {})),
        (["--home", "/h", "daemon", "status"], ("daemon status", "/h", {})),
        (["--home=/h", "daemon", "stop", "--timeout=2"], ("daemon stop", "/h", {"timeout": 2.0})),
        (["daemon", "status", "--timeout", "0.3"], ("daemon status", None, {"timeout": 0.3})),
        (
            ["daemon", "start", "--wait", "3", "--transport", "tcp", "--json", "--config", "c"],
            ("daemon start", None, {"wait": 3.0, "transport": "tcp", "json": True, "config": "c"}),
        ),
        (
            ["daemon", "status", "--descriptor", "a", "--descriptor", "b"],
            ("daemon status", None, {"descriptor": "b"}),
        ),
    ],
)
def test_accepted(calls: list[Any], argv: list[str], expected: Any) -> None:
    assert _fast.try_fast(argv) == 7
    assert calls == [expected]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--version"],
        ["daemon"],
        ["daemon", "--help"],
        ["daemon", "start", "--help"],
        ["daemon", "restart"],
        ["daemon", "serve"],
        ["daemon", "start", "--wait", "soon"],
        ["daemon", "start", "--wait", "-1"],
        ["daemon", "start", "--wait"],
        ["daemon", "start", "--transport", "udp"],
        ["daemon", "stop", "--socket", "x"],
        ["daemon", "status", "--timeout", "soon"],
        ["daemon", "status", "extra"],
        ["daemon", "status", "--json=yes"],
        ["--home", "daemon", "status"],
        ["--home"],
        ["--homely", "x", "daemon", "status"],
        ["nonsense"],
        ["daemons", "start"],
    ],
)
def test_declined(calls: list[Any], argv: list[str]) -> None:
    assert _fast.try_fast(argv) is None
    assert calls == []


def test_render_tree_shows_nesting_and_errors() -> None:
    tree = {
        "name": "root",
        "kind": "supervisor",
        "state": "running",
        "children": [
            {
                "name": "w",
                "kind": "worker",
                "state": "backoff",
                "restarts": 2,
                "last_exit": {"reason": "error", "error": "RuntimeError('boom')"},
            }
        ],
    }
    assert _fast.render_tree(tree) == [
        "  root [supervisor] running",
        "    w [worker] backoff restarts=2 last error: RuntimeError('boom')",
    ]


def test_the_fast_path_imports_no_heavy_module() -> None:
    import shutil
    import subprocess
    import sys
    import tempfile

    home = tempfile.mkdtemp(dir="/tmp", prefix="bcf-")
    code = (
        "import sys\n"
        "from bicameral.cli._fast import try_fast\n"
        f"for cmd in (['status'], ['stop'], ['status', '--json']):\n"
        f"    try_fast(['--home', {home!r}, 'daemon', *cmd])\n"
        "heavy = {'typer', 'trio', 'anyio', 'psutil', 'click', 'orjson', 'mcp'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert out.strip().splitlines()[-1] == "[]"
