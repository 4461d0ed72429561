"""Reading the detached daemon's log: the last lines, and following it.

The daemon writes ``daemon.log`` through a size-rotating handler (the current
file is renamed ``daemon.log.1`` and a new one is created), so a follower
watches the *name*, not the open file: when the name points at another inode,
it finishes nothing more from the old file and continues in the new one, as
``tail -F`` does.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bicameral.daemon._errors import DaemonError

__all__ = ["LogFilter", "follow_log", "parse_since", "tail_log"]

FOLLOW_POLL = 0.25
"""Seconds between looks at a quiet log: a follower polls, as ``tail -f`` does without inotify."""


class LogFilter:
    """Which log records to show: one server's (``--server``), recent ones (``--since``).

    A record is its first line (``2026-11-30 14:52:56,319 LEVEL name[pid]:
    message``) and the indented or traceback lines after it, which follow
    their record's fate. A server's records are those its adapter logs (its
    name quoted in the message) and its own stderr (``bicameral.mcp.server.NAME``).
    """

    def __init__(self, server: str | None = None, since: float | None = None) -> None:
        self.server = server
        self.since = since
        self._keep = True

    def __call__(self, line: str) -> bool:
        if self.server is None and self.since is None:
            return True
        stamp = _timestamp(line)
        if stamp is None:  # a continuation line: as its record
            return self._keep
        keep = True
        if self.since is not None and stamp < self.since:
            keep = False
        if keep and self.server is not None:
            name = self.server
            keep = f"'{name}'" in line or f"bicameral.mcp.server.{name}[" in line
        self._keep = keep
        return keep


def _timestamp(line: str) -> float | None:
    import datetime

    if len(line) < 19 or line[4] != "-" or line[10] != " ":
        return None
    try:
        when = datetime.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return when.timestamp()


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: ``90s``, ``10m``, ``2h``, ``1d`` ago, or ``YYYY-MM-DD[ HH:MM[:SS]]`` (local)."""
    import datetime

    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip()
    if value and value[-1] in units:
        try:
            return now - float(value[:-1]) * units[value[-1]]
        except ValueError:
            pass
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(value, fmt).timestamp()
        except ValueError:
            continue
    raise DaemonError(
        f"--since {text!r}: give a duration (90s, 10m, 2h, 1d) or a time (2026-11-30 14:00)"
    )


def _open(path: Path) -> TextIO:
    try:
        return open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise DaemonError(f"no log at {path} (the daemon has not run detached here)") from None
    except OSError as exc:
        raise DaemonError(f"cannot read {path}: {exc.strerror}") from None


def tail_log(path: Path, lines: int, keep: LogFilter | None = None) -> list[str]:
    """The last ``lines`` lines of the log (each with its newline), of those `keep` keeps."""
    f = _open(path)
    with f:
        source = f if keep is None else (line for line in f if keep(line))
        return list(collections.deque(source, maxlen=lines)) if lines > 0 else []


def follow_log(
    path: Path, lines: int, *, poll: float = FOLLOW_POLL, keep: LogFilter | None = None
) -> Iterator[str]:
    for line in _follow(path, lines, poll, keep):
        if keep is None or keep(line):
            yield line


def _follow(path: Path, lines: int, poll: float, keep: LogFilter | None) -> Iterator[str]:
    """The last ``lines`` lines, then every line appended, across rotations; never ends.

    A line still being written (no newline yet) is held back until it is whole.
    A log that does not exist yet (no daemon has run detached here) is
    waited for, as ``tail -F`` does, instead of failing.
    """
    while not path.exists():
        time.sleep(poll)
    f = _open(path)
    try:
        inode = path.stat().st_ino
        if lines > 0:
            source = f if keep is None else (line for line in f if keep(line))
            yield from collections.deque(source, maxlen=lines)
        partial = ""
        while True:
            chunk = f.read()
            if chunk:
                text = partial + chunk
                *whole, partial = text.split("\n")
                for line in whole:
                    yield line + "\n"
                continue
            try:
                rotated = path.stat().st_ino != inode
            except FileNotFoundError:
                rotated = False  # between the rename and the new file: look again soon
            if rotated:
                f.close()
                f = _open(path)
                inode = path.stat().st_ino
                continue
            time.sleep(poll)
    finally:
        f.close()
