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

__all__ = ["follow_log", "tail_log"]

FOLLOW_POLL = 0.25
"""Seconds between looks at a quiet log: a follower polls, as ``tail -f`` does without inotify."""


def _open(path: Path) -> TextIO:
    try:
        return open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise DaemonError(f"no log at {path} (the daemon has not run detached here)") from None
    except OSError as exc:
        raise DaemonError(f"cannot read {path}: {exc.strerror}") from None


def tail_log(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the log (each with its newline)."""
    f = _open(path)
    with f:
        return list(collections.deque(f, maxlen=lines)) if lines > 0 else []


def follow_log(path: Path, lines: int, *, poll: float = FOLLOW_POLL) -> Iterator[str]:
    """The last ``lines`` lines, then every line appended, across rotations; never ends.

    A line still being written (no newline yet) is held back until it is whole.
    """
    f = _open(path)
    try:
        inode = path.stat().st_ino
        yield from (collections.deque(f, maxlen=lines) if lines > 0 else ())
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
