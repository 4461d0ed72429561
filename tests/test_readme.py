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


def test_the_path_line_for_a_profile_is_absolute() -> None:
    """The line the README gives for a shell profile names the virtualenv by its
    absolute path: `$PWD` in a profile is wherever each new shell starts."""
    text = README.read_text()
    (command,) = re.findall(r"`(echo \"export PATH=[^`]*)`", text)
    out = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        cwd=README.parent,
        timeout=30,
        check=True,
    )
    line = out.stdout.strip()
    assert line.startswith('export PATH="/'), line
    assert "$PWD" not in line and f"{README.parent}/.venv/bin" in line, line
    # From a new shell anywhere else, with that line in its profile:
    found = subprocess.run(
        ["bash", "-c", f"{line}\ncommand -v bicameral || true"],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        timeout=30,
        check=True,
    )
    if (README.parent / ".venv" / "bin" / "bicameral").exists():
        assert found.stdout.strip() == f"{README.parent}/.venv/bin/bicameral", found


def test_the_tour_creates_the_directory_its_example_server_serves() -> None:
    tour = re.search(r"## A tour\n+```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert tour is not None
    lines = tour.group(1).splitlines()
    (add,) = [i for i, line in enumerate(lines) if "mcp add files" in line]
    served = lines[add].split("#")[0].split()[-1]
    assert served.startswith("~/"), served
    assert any(f"mkdir -p {served}" in line for line in lines[: add + 1]), lines


def test_project_hygiene_files_exist_and_agree_with_pyproject() -> None:
    root = README.parent
    license_text = (root / "LICENSE").read_text()
    assert license_text.startswith("MIT License"), license_text[:40]
    assert 'license = "MIT"' in (root / "pyproject.toml").read_text()
    assert (root / "CHANGELOG.md").read_text().startswith("# Changelog")
    contributing = (root / "CONTRIBUTING.md").read_text()
    for what in (".ci/run", "ruff check", "mypy --strict", "python -m bench", "pytest"):
        assert what in contributing, what
    assert "Supported platforms" in README.read_text()
