"""Process resources the OS lets a daemon tune: its descriptor limit and its heap.

POSIX has ``RLIMIT_NOFILE`` (a soft limit a process may raise up to its hard
one); Windows has no such per-process limit on sockets and handles, so
`nofile_limits` says ``None`` there and callers use their own target.
glibc keeps freed heap pages until asked (``malloc_trim``); macOS's and
Windows' allocators hand large freed blocks back on their own, so
`release_heap` does nothing there.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["UNLIMITED", "nofile_limits", "release_heap", "set_nofile_soft"]

#: `nofile_limits`' value for "no limit".
UNLIMITED = -1


def nofile_limits() -> tuple[int, int] | None:
    """(soft, hard) descriptor limits, `UNLIMITED` for infinity; None on Windows."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    return (
        UNLIMITED if soft == infinity else int(soft),
        UNLIMITED if hard == infinity else int(hard),
    )


def set_nofile_soft(soft: int) -> None:
    """Raise (or lower) the soft descriptor limit, keeping the hard one.

    Raises:
      OSError, ValueError: the OS refused (macOS caps it at ``OPEN_MAX``).
    """
    if sys.platform == "win32":
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def release_heap() -> None:
    """Hand the C heap's free pages back to the system where the allocator keeps them."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        trim: Callable[[int], Any] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl: no malloc_trim
        return None
    return trim
