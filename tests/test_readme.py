"""The README's code runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_supervisor_example_runs_and_prints_what_the_readme_says() -> None:
    (block,) = [b for b in _python_blocks() if "from bicameral.supervisor" in b]
    out = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "running 2 RuntimeError('boom')"
    # Both crashes were logged, not swallowed, each as one line: an expected
    # crash in a first run reads as intended, not as two tracebacks.
    assert out.stderr.count("crashed: RuntimeError('boom')") == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 2


def test_readme_opens_with_the_install_and_test_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    lines = first_block.group(1).strip().splitlines()
    assert lines[0].endswith("bicameral daemon start")
    assert lines[1] == ".venv/bin/python -m pytest"
    ci = (README.parent / ".ci" / "run").read_text()
    assert "\n" + lines[1] + "\n" in ci


def test_every_doc_link_resolves_inside_the_repository() -> None:
    root = README.parent
    for doc in [README, *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.exists(), f"{doc.name}: link to {target} does not resolve"
            assert root in resolved.parents or resolved == root, f"{doc.name}: {target} leaves"
