"""Readiness: how a starting daemon tells whoever waits that it is up, or why not.

Two listeners, both optional:

- the ``start`` command that spawned it. ``start`` creates a pipe, passes the
  write end down (its number in ``$BICAMERAL_READY_FD``) and blocks reading
  the other end with a timeout. The daemon writes one line, ``READY`` once
  the descriptor is published, ``ERROR <reason>`` when it cannot start, or
  ``BUSY <pid>`` when another daemon already holds the lock, then closes its
  end. End of file without a line means the daemon died before it could say
  anything (the reason is then in its log). No polling, no sleeps: the
  reader wakes up exactly when the daemon speaks or dies.
- systemd, when ``$NOTIFY_SOCKET`` is set (``Type=notify`` units): the
  ``sd_notify`` datagrams ``READY=1``, ``STOPPING=1``, ``RELOADING=1``,
  ``WATCHDOG=1`` and ``STATUS=...``, sent with the stdlib socket module.
"""

from __future__ import annotations

import os
import time

from bicameral.platform import fd_from_env, read_line, unix_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "READY_FD_ENV",
    "Notifier",
    "ReadinessMessage",
    "read_readiness",
    "watchdog_interval",
]

READY_FD_ENV = "BICAMERAL_READY_FD"
"""Environment variable carrying the readiness pipe's write end to the daemon."""


class Notifier:
    """The daemon's side: tells the ``start`` pipe and systemd about its state.

    Every method is safe to call when nobody listens, and at most one final
    message (ready or error) goes down the pipe, which is then closed.
    """

    def __init__(self, *, ready_fd: int | None, notify_socket: str | None) -> None:
        self._fd = ready_fd
        self._notify_socket = notify_socket
        if ready_fd is not None:
            try:
                os.set_inheritable(ready_fd, False)
            except OSError:
                self._fd = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Pick up ``$BICAMERAL_READY_FD`` and ``$NOTIFY_SOCKET``, removing both.

        They are removed from ``os.environ`` so that child processes (MCP
        servers) do not inherit a readiness channel that is not theirs.
        """
        env = os.environ if environ is None else environ
        fd: int | None = None
        raw = env.get(READY_FD_ENV)
        if raw:
            try:
                fd = fd_from_env(raw)
            except (ValueError, OSError):
                fd = None
        notify = env.get("NOTIFY_SOCKET") or None
        if environ is None:
            os.environ.pop(READY_FD_ENV, None)
            os.environ.pop("NOTIFY_SOCKET", None)
        return cls(ready_fd=fd, notify_socket=notify)

    @property
    def has_pipe(self) -> bool:
        return self._fd is not None

    def _pipe(self, line: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, line.replace("\n", " ").encode("utf-8", "replace")[:4000] + b"\n")
        except OSError:
            pass  # the starter gave up waiting; the daemon runs on regardless
        finally:
            os.close(fd)

    def ready(self, status: str = "", detail: str = "") -> None:
        """The descriptor is published and the daemon answers.

        `detail` (one line) follows ``READY`` on the pipe: the adapters'
        counts by state, as JSON, for ``start`` to report.
        """
        self._pipe(f"READY {detail}" if detail else "READY")
        self.sd_notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def error(self, reason: str) -> None:
        """The daemon cannot start; ``reason`` is one line for the user."""
        self._pipe(f"ERROR {reason}")
        self.sd_notify(f"STATUS=failed: {reason}")

    def busy(self, holder_pid: int | None) -> None:
        """Another daemon holds the lock; the starter should wait for that one."""
        self._pipe(f"BUSY {holder_pid or ''}".rstrip())

    def stopping(self) -> None:
        self.sd_notify("STOPPING=1")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1; Python's
        # monotonic clock is CLOCK_MONOTONIC where systemd runs.
        usec = time.monotonic_ns() // 1000
        self.sd_notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def reloaded(self) -> None:
        self.sd_notify("READY=1")

    def watchdog(self) -> None:
        self.sd_notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the pipe without a message (the starter reads end of file)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def sd_notify(self, message: str) -> None:
        """Send ``message`` to ``$NOTIFY_SOCKET``; errors are ignored, as in libsystemd."""
        path = self._notify_socket
        if not path:
            return
        import socket

        address = "\0" + path[1:] if path.startswith("@") else path
        try:
            with unix_socket(socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
        except OSError:
            pass


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, if it is for us."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class ReadinessMessage:
    """What the daemon said on the pipe: ``kind`` is READY, ERROR, BUSY, EOF or TIMEOUT."""

    __slots__ = ("detail", "kind")

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return f"ReadinessMessage({self.kind!r}, {self.detail!r})"


def parse_readiness(line: bytes) -> ReadinessMessage:
    text = line.decode("utf-8", "replace").strip()
    kind, _, detail = text.partition(" ")
    if kind in ("READY", "ERROR", "BUSY"):
        return ReadinessMessage(kind, detail)
    return ReadinessMessage("ERROR", f"unexpected readiness message {text!r}")


def read_readiness(fd: int, timeout: float) -> ReadinessMessage:
    """Block until the daemon writes its line, closes the pipe, or ``timeout`` passes."""
    data = read_line(fd, timeout)
    if data is None:
        return ReadinessMessage("TIMEOUT")
    line = data.split(b"\n", 1)[0]
    return parse_readiness(line) if line else ReadinessMessage("EOF")
