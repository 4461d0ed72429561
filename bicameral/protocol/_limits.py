"""The resource limits of one protocol server (SPEC §7), all configurable."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputBudget", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server lets its clients consume.

    Attributes:
      max_frame: the longest line, in bytes, not counting the newline. A
        longer one is answered with ``INVALID_REQUEST`` and the connection is closed, as
        soon as more than this has arrived without a newline.
      max_in_flight: requests handled at once on one connection (each batch
        element counts). The server stops reading that connection until one
        finishes, so a client that pipelines without bound, or sends without
        reading its answers, holds at most this many handlers and responses.
      max_connections: connections served at once; more are closed on accept.
      partial_frame_timeout: seconds a connection may sit inside an
        unfinished line without sending another byte before it is closed. A
        connection between lines may stay idle for ever.
      max_buffered: bytes of unfinished lines held across all connections
        at once. Without it, clients that each drip a line just under
        `max_frame`, a byte per `partial_frame_timeout`, could make the
        server hold `max_frame` times `max_connections` (16 GiB with the
        defaults). A connection whose unfinished line takes the total over
        it is answered ``INVALID_REQUEST`` and closed; lines shorter than one receive
        (64 KiB) are never counted, so ordinary requests are never refused.
        Upgraded connections (MCP sessions) count against it too, through
        `Connection.input_budget`.
      max_batch: entries in one batch; a larger batch is answered ``INVALID_REQUEST``.
      max_unauthenticated: TCP connections that have not yet presented the
        token, counted apart from `max_connections`: more are closed on
        accept, so that whoever lacks the token cannot crowd out the owner.
      auth_timeout: seconds a TCP connection may stay without presenting
        the token before it is closed.
      max_unauthenticated_frame: the longest line before the token is
        presented (batches are refused then too): a stranger cannot make
        the daemon parse or hold more than this per connection.
    """

    max_frame: int = 16 * 1024 * 1024
    max_in_flight: int = 64
    max_connections: int = 1024
    partial_frame_timeout: float = 30.0
    max_buffered: int = 256 * 1024 * 1024
    max_batch: int = 1000
    max_unauthenticated: int = 16
    auth_timeout: float = 5.0
    max_unauthenticated_frame: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_frame",
            "max_in_flight",
            "max_connections",
            "max_buffered",
            "max_batch",
            "max_unauthenticated",
            "max_unauthenticated_frame",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")
        if not self.partial_frame_timeout > 0:
            raise ValueError("Limits.partial_frame_timeout must be positive")
        if not self.auth_timeout > 0:
            raise ValueError("Limits.auth_timeout must be positive")


class InputBudget:
    """The bytes of unfinished lines one server's connections hold (`Limits.max_buffered`).

    Shared by the server's connections and by whatever reads an upgraded
    connection afterwards (an MCP session), so one limit bounds them all.
    """

    __slots__ = ("limit", "peak", "used")

    #: Unfinished input up to one receive is not counted: ordinary messages
    #: arrive whole, and are never refused.
    COUNT_FROM = 65536

    #: When everything held goes back after more than this was, the freed
    #: memory is handed back to the system (`release_memory`).
    RELEASE_FROM = 8 * 1024 * 1024

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def claim(self, old: int, new: int) -> bool:
        """A reader's unfinished input goes from ``old`` to ``new`` bytes.

        Returns whether the total is within the limit; a reader that was
        told ``False`` gives up its input and calls ``claim(new, 0)``.
        Shrinking is always within it.
        """
        self.used += new - old
        if self.used > self.peak:
            self.peak = self.used
        elif self.used <= 0 and self.peak > self.RELEASE_FROM:
            self.peak = 0
            _release_soon()
        return new <= old or self.used <= self.limit


def _release_soon() -> None:
    """`release_memory` once what the readers were holding around the input is gone too."""
    try:
        import trio

        trio.lowlevel.spawn_system_task(_release_later)
    except RuntimeError:  # not in a Trio run
        release_memory()


async def _release_later() -> None:
    import trio

    await trio.sleep(RELEASE_DELAY)
    release_memory()


RELEASE_DELAY = 0.5
"""Seconds between the last large input's end and handing memory back."""


def release_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``).

    Large inputs are read in many 64 KiB pieces, which the C allocator keeps
    in its heap after they are freed: without this, the daemon's RSS would
    stay at its high-water mark after a burst of large bodies. Elsewhere
    (macOS, musl) the allocator returns such memory itself: nothing to do.
    """
    from bicameral.platform import release_heap

    release_heap()
