"""docs/testing.md's examples run as written, as an outside project runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _example(kind: str) -> str:
    blocks = re.findall(r"```python\n(# docs example: (\w+)\n.*?)```", DOC.read_text(), re.S)
    (code,) = [code for code, k in blocks if k == kind]
    return code


def _run(tmp_path: Path, code: str, *args: str) -> str:
    (tmp_path / "test_example.py").write_text(code)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BICAMERAL_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.stdout + proc.stderr


def test_the_trio_example_passes_under_pytest_trio(tmp_path: Path) -> None:
    output = _run(tmp_path, _example("trio"))
    assert re.search(r"^=+ 2 passed", output, re.M), output


def test_the_asyncio_example_passes_under_anyios_plugin(tmp_path: Path) -> None:
    output = _run(tmp_path, _example("asyncio"), "-p", "no:trio")
    assert re.search(r"^=+ 1 passed", output, re.M), output
