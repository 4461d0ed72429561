"""The ways a supervisor reports failure to whoever runs it."""

from __future__ import annotations

__all__ = ["ChildStartError", "ProcessExitedError", "RestartIntensityExceeded", "original_error"]


def original_error(error: BaseException | None) -> BaseException | None:
    """The error a chain of supervisor failures started from.

    A give-up that escalates through nested supervisors wraps the child's
    error once per level; every level names that first error, not the level
    below it, so that an error's text stays the same size however deep the
    tree is (embedding the inner message would double its escaping per level).
    """
    seen = 0
    while isinstance(error, (RestartIntensityExceeded, ChildStartError)) and seen < 10_000:
        error = error.last_error if isinstance(error, RestartIntensityExceeded) else error.error
        seen += 1
    return error


def _describe(child: str, error: BaseException | None, how: str) -> str:
    """``child 'c' <how> ValueError('x')``; a nested supervisor's failure by its original."""
    if isinstance(error, (RestartIntensityExceeded, ChildStartError)):
        first = original_error(error)
        return f"child {child!r} gave up (supervisor {error.supervisor!r}), originally {first!r}"
    return f"child {child!r} {how} {error!r}"


class RestartIntensityExceeded(Exception):
    """A supervisor saw more than `max_restarts` restarts within `max_seconds`.

    Raised by `Supervisor.run` after it has stopped all of its children. A
    parent supervisor treats it like any other child crash: it restarts the
    subtree, or gives up in turn and raises its own `RestartIntensityExceeded`.

    The message names this supervisor, the child that went over the limit
    and the *original* error (for a child that is itself a supervisor that
    gave up, the error its own failure started from), once: it does not
    grow with the depth of the tree.

    Attributes:
      supervisor: the name of the supervisor that gave up.
      max_restarts, max_seconds: its limits.
      last_error: the exception of the child crash that went over the limit
        (also set as ``__cause__``), or ``None`` when that child exited
        normally (a PERMANENT child returning).
      child: the name of that child.
      original: the first error of the chain (`original_error`).
    """

    def __init__(
        self,
        supervisor: str,
        child: str,
        max_restarts: int,
        max_seconds: float,
        last_error: BaseException | None,
    ) -> None:
        super().__init__(
            f"supervisor {supervisor!r}: more than {max_restarts} restarts within "
            f"{max_seconds} s; last: {_describe(child, last_error, 'exited with')}"
        )
        self.original = original_error(last_error)
        self.supervisor = supervisor
        self.child = child
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.last_error = last_error


class ChildStartError(Exception):
    """A child failed before it reported readiness with ``task_status.started()``.

    Raised by `Supervisor.run` during the initial start (after stopping the
    children already started, as OTP's ``start_link`` fails), and by
    `Supervisor.start_child` / `Supervisor.restart_child`.

    Attributes:
      supervisor, child: names.
      error: the child's exception (also ``__cause__``); a `RuntimeError`
        when it returned without calling ``task_status.started()``.
      original: the first error of the chain (`original_error`).
    """

    def __init__(self, supervisor: str, child: str, error: BaseException | None) -> None:
        if error is None:
            what = f"child {child!r} failed to start: returned before task_status.started()"
        else:
            what = _describe(child, error, "failed to start:")
        super().__init__(f"supervisor {supervisor!r}: {what}")
        self.original = original_error(error)
        self.supervisor = supervisor
        self.child = child
        self.error = error


class ProcessExitedError(Exception):
    """A `Command` child's process exited with a non-zero status or a signal.

    Attributes:
      argv: the command line.
      pid: the process id it had.
      returncode: its status, or minus the signal number (as `subprocess`).
    """

    def __init__(self, argv: tuple[str, ...], pid: int, returncode: int) -> None:
        if returncode < 0:
            how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with status {returncode}"
        super().__init__(f"process {pid} ({argv[0] if argv else '?'}) {how}")
        self.argv = argv
        self.pid = pid
        self.returncode = returncode
