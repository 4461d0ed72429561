"""The deployment tests: the image, the manifests, replicas behind nginx.

They need root-level machinery (dockerd, Debian packages) and minutes, so
they carry the ``deploy`` mark, which the default run leaves out
(``-m "not deploy"`` in pyproject.toml); ``.ci/run`` runs them as a step
of their own: ``pytest -m deploy tests/deploy``.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in item.nodeid:
            item.add_marker(pytest.mark.deploy)
