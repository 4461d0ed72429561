"""`BurstLog`: a repeated event logged once per burst, with how often it happened."""

from __future__ import annotations

import logging

import trio

__all__ = ["BurstLog"]


class BurstLog:
    """Logs a repeated event once per burst, with how often it happened.

    An overload (out of descriptors, a flood of refused connections, a
    server writing junk without end) must not also flood the log: the first
    occurrence is logged at once, the rest of the burst as one line with a
    count when the next one comes after `quiet` seconds.
    """

    def __init__(self, logger: logging.Logger, level: int, quiet: float = 5.0) -> None:
        self.logger = logger
        self.level = level
        self.quiet = quiet
        self.count = 0
        self.last = -float("inf")
        self.message = ""

    def note(self, message: str) -> None:
        now = trio.current_time()
        if now - self.last >= self.quiet:
            if self.count:
                self.logger.log(self.level, "%s (%d more times)", self.message, self.count)
            self.logger.log(self.level, "%s", message)
            self.count = 0
        else:
            self.count += 1
        self.message = message
        self.last = now
