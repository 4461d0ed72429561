"""Signals become requests: graceful stop, immediate stop, reload.

SIGTERM and SIGINT (and SIGBREAK, CTRL_BREAK, on Windows) ask for a graceful
stop of the supervisor tree; a second one while that stop is under way
cancels everything at once; SIGHUP reloads the configuration. The daemon
exits 0 either way: both were asked for.

Two layers, because a signal can arrive at any moment of the process's life:

- :func:`install_process_handlers`, before Trio starts: until the Trio
  receiver takes over, a stop signal raises :class:`StopRequested` (so a
  daemon still importing or loading plugins dies cleanly, through its
  ``finally`` blocks, instead of by the default action that would skip
  them). Once the tree is down, :func:`quiet_process_handlers` makes the same
  handlers no-ops: Trio's ``open_signal_receiver`` re-delivers any signal
  still pending when it closes, and during the last milliseconds of cleanup
  that signal must not kill the process before the descriptor is removed.
- :func:`signal_child`, the first child of the supervisor tree, which reads
  the Trio receiver (opened by ``serve`` for the daemon's whole life) and
  turns each signal into a call on the :class:`Control` object.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any, Protocol

import trio

from bicameral.platform import graceful_signal_names, reload_signal_names

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import FrameType

__all__ = [
    "Control",
    "StopRequested",
    "graceful_signals",
    "install_process_handlers",
    "quiet_process_handlers",
    "reload_signals",
    "remember_early_reloads",
    "remember_early_stops",
    "signal_child",
    "take_early_reload",
    "take_early_stop",
]

logger = logging.getLogger("bicameral.daemon")


class StopRequested(BaseException):
    """A stop signal arrived before the Trio signal receiver was listening."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Control(Protocol):
    """What the signal child drives (implemented by ``serve``)."""

    def request_stop(self, reason: str) -> None: ...
    def stop_now(self, reason: str) -> None: ...
    def request_reload(self, reason: str) -> None: ...
    @property
    def stopping(self) -> bool: ...


def graceful_signals() -> list[int]:
    """The signals that mean "stop gracefully" on this platform."""
    return [int(getattr(signal, name)) for name in graceful_signal_names()]


def reload_signals() -> list[int]:
    """SIGHUP where it exists."""
    return [int(getattr(signal, name)) for name in reload_signal_names()]


_state = {"quiet": False, "reload_pending": False}
_early_reloads: list[list[int]] = []
_early_stops: list[list[int]] = []


def remember_early_stops(stops: list[int]) -> None:
    """Stop signals recorded (in `stops`) before `install_process_handlers` ran count too."""
    _early_stops.append(stops)


def take_early_stop() -> int | None:
    """The first stop signal that arrived before ``serve`` took over, if any; clears it."""
    for stops in _early_stops:
        if stops:
            signum = stops[0]
            stops.clear()
            return signum
    return None


def remember_early_reloads(hups: list[int]) -> None:
    """SIGHUPs recorded (in `hups`) before `install_process_handlers` ran count too."""
    _early_reloads.append(hups)


def take_early_reload() -> bool:
    """Whether a SIGHUP arrived before the daemon was ready; clears the record.

    SPEC §6: a SIGHUP before readiness is remembered and applied as a reload
    after it, never the default action that kills the process.
    """
    pending = bool(_state["reload_pending"]) or any(_early_reloads)
    _state["reload_pending"] = False
    for hups in _early_reloads:
        hups.clear()
    return pending


def _early_handler(signum: int, frame: FrameType | None) -> None:
    if _state["quiet"]:
        return
    if signum in reload_signals():
        _state["reload_pending"] = True
        return
    raise StopRequested(signum)


def install_process_handlers() -> None:
    """Stop signals raise :class:`StopRequested` until Trio's receiver takes over."""
    _state["quiet"] = False
    for signum in [*graceful_signals(), *reload_signals()]:
        signal.signal(signum, _early_handler)


def quiet_process_handlers() -> None:
    """From now on, until exit, signals that Trio re-delivers are ignored."""
    _state["quiet"] = True


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


async def signal_child(
    receiver: AsyncIterator[int],
    control: Control,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The tree's signal child: one signal, one request, until it is stopped.

    It starts first and stops last (its ``shutdown`` is 0, so it is simply
    cancelled then), so a second stop signal is heard while every other
    child is shutting down.
    """
    task_status.started()
    reloads = set(reload_signals())
    async for signum in receiver:
        name = signal_name(signum)
        if signum in reloads:
            control.request_reload(name)
        elif control.stopping:
            control.stop_now(f"second {name}")
        else:
            control.request_stop(name)
