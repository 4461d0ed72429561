"""What a supervisor is told about each child: `ChildSpec`, `Restart`, `Strategy`."""

from __future__ import annotations

import contextlib
import enum
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bicameral.supervisor._backoff import Backoff

__all__ = ["DEFAULT_WORKER_SHUTDOWN", "ChildSpec", "Restart", "Strategy"]

#: Grace for workers and processes, as Elixir's default ``shutdown: 5000``.
DEFAULT_WORKER_SHUTDOWN = 5.0


class Restart(enum.Enum):
    """When a child is restarted after it exits (OTP's ``restart`` key).

    PERMANENT: always, whether it returned or raised.
    TRANSIENT: only when it raised; a normal return leaves it stopped.
    TEMPORARY: never; it is removed from the supervisor when it exits.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """What else is restarted when a child crashes (OTP's ``strategy``).

    ONE_FOR_ONE: only that child.
    ONE_FOR_ALL: every sibling is stopped (reverse start order) and all are
      started again (start order).
    REST_FOR_ONE: that child and every sibling started after it.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def _kind_of(target: object) -> str:
    # Supervisor and Command mark themselves; this module cannot import them.
    kind = getattr(type(target), "_bicameral_kind", "worker")
    return kind if isinstance(kind, str) else "worker"


_accepts_cache: dict[Any, bool] = {}


def accepts_task_status(target: Callable[..., Any]) -> bool:
    """True when `target` takes a ``task_status`` keyword (readiness protocol).

    Cached per target: `inspect.signature` costs microseconds and a tree may
    have thousands of children sharing one function.
    """
    try:
        return _accepts_cache[target]
    except (KeyError, TypeError):
        pass
    try:
        accepts = "task_status" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        accepts = False
    with contextlib.suppress(TypeError):  # an unhashable callable is just not cached
        _accepts_cache[target] = accepts
    return accepts


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child of a `Supervisor` (OTP's child specification).

    Attributes:
      name: unique among its siblings; how the operator API and the snapshot
        refer to the child.
      target: an async callable, called as ``await target(*args)`` (plus
        ``task_status=`` when it accepts that keyword); or a `Supervisor`
        (a subtree); or a `Command` (an OS process).
      args: positional arguments for a callable target.
      restart: see `Restart`.
      retry_after: what to do when the supervisor would leave the child
        ``failed`` (RabbitMQ ``supervisor2``'s ``{transient, Delay}`` /
        ``{permanent, Delay}``). ``None`` (the default, OTP's behaviour): it
        stays failed until `Supervisor.restart_child`. A number of seconds:
        the supervisor tries it again after that long, and again after each
        failure, for as long as it fails. A `Backoff`: the same, with a delay
        that grows per consecutive failure (``Backoff.delay(n)`` before try
        *n*) and starts over once the child stayed up for its supervisor's
        ``max_seconds`` (a subtree: its own ``max_seconds``, if longer). The
        child is left failed when a subtree gives up and its entry is
        TRANSIENT; when restarting it would exceed its supervisor's restart
        intensity (with ``retry_after`` the supervisor does not give up
        because of this child: it uncounts that restart and retries later);
        and when an operator's `Supervisor.restart_child` fails to start it.
        Not for TEMPORARY children, which are never restarted.
      shutdown: seconds a graceful stop waits after setting
        ``current_child().stopping`` before cancelling the child; ``0``
        cancels at once (OTP's ``brutal_kill``); ``math.inf`` waits forever
        (OTP's ``infinity``). Left at ``None`` it becomes 5.0 for workers and
        processes and stays ``None``, meaning no limit, for a `Supervisor`
        target: a subtree's own children's graces bound it (OTP and Elixir
        default to ``infinity`` for supervisors).

    Specs are compared by value, so a configuration reload can tell an
    unchanged child from a changed one.
    """

    name: str
    target: Any
    args: tuple[Any, ...] = ()
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = None
    retry_after: float | Backoff | None = None
    kind: str = field(init=False, compare=False, repr=False, default="worker")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ChildSpec.name must be a non-empty string")
        if not isinstance(self.restart, Restart):
            raise TypeError(f"ChildSpec.restart must be a Restart, not {self.restart!r}")
        kind = _kind_of(self.target)
        if kind == "worker" and not callable(self.target):
            raise TypeError(f"ChildSpec.target must be callable, not {self.target!r}")
        if kind != "worker" and self.args:
            raise TypeError(f"ChildSpec.args makes no sense for a {kind} target")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kind", kind)
        if self.shutdown is None:
            if kind != "supervisor":
                object.__setattr__(self, "shutdown", DEFAULT_WORKER_SHUTDOWN)
        elif math.isnan(self.shutdown) or self.shutdown < 0:
            raise ValueError("ChildSpec.shutdown must be >= 0 (or None)")
        self._check_retry_after()

    def _check_retry_after(self) -> None:
        after = self.retry_after
        if after is None:
            return
        if self.restart is Restart.TEMPORARY:
            raise ValueError("ChildSpec.retry_after makes no sense for a TEMPORARY child")
        if isinstance(after, Backoff):
            if after.initial <= 0:
                raise ValueError("ChildSpec.retry_after: the Backoff's initial delay must be > 0")
            return
        if isinstance(after, bool) or not isinstance(after, (int, float)):
            raise TypeError(f"ChildSpec.retry_after must be seconds or a Backoff, not {after!r}")
        if not 0 < after < math.inf:
            raise ValueError("ChildSpec.retry_after must be > 0 seconds and finite")

    @property
    def grace(self) -> float:
        """`shutdown` as a number of seconds (``math.inf`` for no limit)."""
        return math.inf if self.shutdown is None else self.shutdown
