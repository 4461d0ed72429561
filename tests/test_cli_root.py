"""The root command: version and help, through the real console script."""

from __future__ import annotations

import subprocess
import sys

import bicameral


def test_version_prints_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bicameral", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"bicameral {bicameral.__version__}"
