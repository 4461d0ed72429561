"""Which operating system this is, as one value every decision takes.

`Platform.of(sys.platform)` names the three families bicameral is built for.
Every platform decision in this package is a function that takes a
`Platform` (defaulting to `CURRENT`), so the tests pin the macOS and Windows
branches on Linux. The BSDs take macOS's branch: the same ``sockaddr_un``,
kqueue, and no ``/proc`` by default.
"""

from __future__ import annotations

import enum
import sys

__all__ = ["CURRENT", "Platform"]


class Platform(enum.Enum):
    """An OS family; the value is the ``sys.platform`` of its main member."""

    LINUX = "linux"
    MACOS = "darwin"
    WINDOWS = "win32"

    @classmethod
    def of(cls, value: str) -> Platform:
        """The family of a ``sys.platform`` value (``"linux"``, ``"darwin"``, ``"win32"``...)."""
        if value.startswith("linux"):
            return cls.LINUX
        if value in ("win32", "cygwin", "msys"):
            return cls.WINDOWS
        return cls.MACOS

    @property
    def windows(self) -> bool:
        return self is Platform.WINDOWS

    @property
    def posix(self) -> bool:
        return self is not Platform.WINDOWS

    @property
    def linux(self) -> bool:
        return self is Platform.LINUX

    @property
    def macos(self) -> bool:
        return self is Platform.MACOS

    @property
    def label(self) -> str:
        """How messages name it."""
        return {"linux": "Linux", "darwin": "macOS", "win32": "Windows"}[self.value]


#: The platform this process runs on.
CURRENT = Platform.of(sys.platform)
