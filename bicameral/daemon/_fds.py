"""The daemon's descriptor table: its limit raised where allowed, and a reserve kept.

Every connection, server pipe and log file is a descriptor, and the table is
small on a desktop (``ulimit -n`` is 1024 by default). At start the daemon
raises its soft ``RLIMIT_NOFILE`` towards the hard limit (at most
`NOFILE_TARGET`: enough for any load here, small enough that the servers it
spawns, which inherit it, are not surprised), and keeps a reserve
(`fd_reserve`) that connections from strangers can never take: the owner's
own requests, the control socket, its bridges and the servers that start
later draw on it. The HTTP listener sizes its caps from `connection_budget`.
"""

from __future__ import annotations

import logging
import os

__all__ = ["NOFILE_TARGET", "FdTable", "fd_table"]

logger = logging.getLogger("bicameral.daemon")

NOFILE_TARGET = 65536
"""The soft ``RLIMIT_NOFILE`` the daemon raises itself to, when the hard limit allows."""

RESERVE_MIN = 128
"""Descriptors never given to HTTP connections, at the least (a quarter of the table if more)."""


class FdTable:
    """The limit the daemon runs under and what its HTTP listener may use of it."""

    def __init__(self, limit: int, raised_from: int | None = None) -> None:
        self.limit = limit
        self.raised_from = raised_from

    @property
    def reserve(self) -> int:
        """Descriptors kept for the control socket, bridges, servers and files."""
        return max(RESERVE_MIN, self.limit // 4)

    def connection_budget(self) -> int:
        """How many HTTP connections may be open at once, counting what is open now."""
        return max(8, self.limit - self.reserve - open_fds())

    def describe(self) -> str:
        raised = f" (raised from {self.raised_from})" if self.raised_from is not None else ""
        return f"descriptor limit {self.limit}{raised}, {self.reserve} kept in reserve"


def fd_table() -> FdTable:
    """Raise the soft ``RLIMIT_NOFILE`` as far as allowed (up to `NOFILE_TARGET`)."""
    from bicameral.platform import UNLIMITED, nofile_limits, set_nofile_soft

    limits = nofile_limits()
    if limits is None:  # Windows: no such limit
        return FdTable(NOFILE_TARGET)
    soft, hard = limits
    ceiling = NOFILE_TARGET if hard == UNLIMITED else min(hard, NOFILE_TARGET)
    if soft != UNLIMITED and soft < ceiling:
        try:
            set_nofile_soft(ceiling)
        except (OSError, ValueError) as exc:  # macOS caps it at OPEN_MAX below `hard`
            logger.debug("cannot raise RLIMIT_NOFILE to %d: %s", ceiling, exc)
            return FdTable(soft)
        return FdTable(ceiling, raised_from=soft)
    return FdTable(NOFILE_TARGET if soft == UNLIMITED else soft)


def open_fds() -> int:
    """Descriptors open in this process now (0 where the platform cannot tell)."""
    for where in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(where))
        except OSError:
            continue
    return 0
