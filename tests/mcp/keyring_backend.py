"""A `keyring` backend for the tests: an OS keyring stand-in in a JSON file.

Selected with ``PYTHON_KEYRING_BACKEND=tests.mcp.keyring_backend.FileKeyring``
and ``BICAMERAL_TEST_KEYRING=<file>``, in every process of a test (the CLI
that logs in and the daemon that refreshes), as a real keyring would be.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _path(self) -> Path:
        return Path(os.environ["BICAMERAL_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self._path().read_text())
        except (OSError, ValueError):
            return {}
        return data

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._path().write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        data.pop(f"{service}/{username}", None)
        self._path().write_text(json.dumps(data))
