"""`Restarts`: what a child's exit means, by OTP's rules, and the restarts that follow.

The decisions follow Erlang/OTP's ``supervisor.erl``; each place that makes
one says which part. A ONE_FOR_ONE restart happens in the child's own task
(`_after_exit` returns the backoff delay); everything that touches several
children (a ONE_FOR_ALL / REST_FOR_ONE restart, giving up) is posted to the
supervisor's *manager* (`Supervisor._manage`), which handles one event at a
time, as OTP's supervisor process handles one message at a time.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Iterable
from typing import Any

import anyio

from bicameral.supervisor._backoff import Backoff
from bicameral.supervisor._child import ChildHandle
from bicameral.supervisor._child_tasks import ChildTasks, logger
from bicameral.supervisor._errors import ChildStartError, RestartIntensityExceeded
from bicameral.supervisor._intensity import RestartIntensity
from bicameral.supervisor._spec import ChildSpec, Restart, Strategy

__all__ = ["FAIL", "GROUP", "STOP", "Restarts"]

# Manager events.
GROUP = "group"  # (kind, child, gen, delay): a group restart is due
FAIL = "fail"  # (kind, error): intensity exceeded
STOP = "stop"  # (kind,): graceful stop requested


class Restarts(ChildTasks):
    """Restart decisions on top of `ChildTasks`: restart types, strategies, intensity, backoff.

    Also the manager's mailbox (`_post`), since restarts are what it mostly
    receives; `Supervisor` runs the manager loop that empties it.
    """

    def __init__(
        self,
        name: str,
        children: Iterable[ChildSpec],
        *,
        strategy: Strategy,
        intensity: RestartIntensity,
        backoff: Backoff,
        rng: random.Random,
    ) -> None:
        super().__init__(name, children)
        self.strategy = strategy
        self.backoff = backoff
        self._intensity = intensity
        self._rng = rng
        self._stopping_all = False  # giving up or stopping: no exit is restarted
        self._lock: anyio.Lock | None = None  # the manager's and operators' (made per run)
        self._events: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake: anyio.Event | None = None
        self._interrupt: anyio.Event | None = None  # set by stop() during a group backoff

    @property
    def max_restarts(self) -> int:
        return self._intensity.max_restarts

    @property
    def max_seconds(self) -> float:
        return self._intensity.max_seconds

    def _post(self, event: tuple[Any, ...]) -> None:
        """Hand the manager an event (`GROUP`, `FAIL`, `STOP`)."""
        self._events.append(event)
        if self._wake is not None:
            self._wake.set()
        if event[0] == STOP and self._interrupt is not None:
            self._interrupt.set()  # a group restart's backoff never delays a stop

    def _after_exit(
        self, child: ChildHandle, error: BaseException | None, shutdown: bool = False
    ) -> float | None:
        """Decide what an unrequested exit means (OTP's ``restart_child/2`` + ``restart/2``).

        `shutdown`: the child is a nested supervisor that gave up. OTP's
        supervisor then exits with reason ``shutdown``: a PERMANENT entry
        restarts it (counted here, so giving up escalates), a TRANSIENT or
        TEMPORARY one keeps the entry, ``failed``, until ``restart_child``
        (or, with ``retry_after``, until its retry: `_fail`).
        """
        restart = child.spec.restart
        if self._stopping_all:
            child.state = "stopped"
            return None
        if shutdown and restart is not Restart.PERMANENT:
            return self._fail(child)
        if restart is Restart.TEMPORARY:
            # OTP deletes a temporary child's spec when it exits, whatever the reason.
            child.state = "stopped"
            self._remove(child)
            return None
        if restart is Restart.TRANSIENT and error is None:
            child.state = "stopped"
            return None
        if not self._intensity.add():
            if child.spec.retry_after is not None:
                # supervisor2's {permanent, Delay}: not a give-up, a retry later.
                self._intensity.take_back()
                return self._fail(child)
            self._post((FAIL, self._give_up(child, error)))
            return None
        delay = self._next_delay(child)
        child.state = "backoff" if delay > 0 else "starting"
        if self.strategy is Strategy.ONE_FOR_ONE:
            child.restarts += 1
            return delay
        self._post((GROUP, child, child._gen, delay))  # the manager restarts it
        return None

    def _give_up(self, child: ChildHandle, error: BaseException | None) -> RestartIntensityExceeded:
        """The restart intensity is exceeded at `child`: the failure to end the run with.

        From here on no exit is restarted (OTP's supervisor stops processing
        restarts once it decides to shut down).
        """
        self._stopping_all = True
        child.state = "failed"
        exc = RestartIntensityExceeded(
            self.name, child.spec.name, self.max_restarts, self.max_seconds, error
        )
        exc.__cause__ = error
        return exc

    def _next_delay(self, child: ChildHandle) -> float:
        if child._up_since is not None and (
            anyio.current_time() - child._up_since >= self.max_seconds
        ):
            child._backoff_n = 0  # it was healthy for a whole period: start over
        child._backoff_n += 1
        child._up_since = None
        return self.backoff.delay(child._backoff_n, self._rng)

    async def _group_restart(self, failed: ChildHandle, delay: float) -> None:
        """ONE_FOR_ALL / REST_FOR_ONE: stop the group in reverse, start it in order.

        A child that fails to become ready while the group starts again is one
        more crash (OTP's ``try_again_restart``): counted, and the group
        restart begins again from it.
        """
        while True:
            if self.strategy is Strategy.ONE_FOR_ALL:
                group = list(self._children)
            else:
                group = self._children[self._children.index(failed) :]
            for child in group:
                child._deliberate = child._alive  # a crash while we stop them is not news
            for child in reversed(group):
                await self._stop_child(child)
                if child is not failed and child.spec.restart is Restart.TEMPORARY:
                    # OTP never restarts a temporary child: it is deleted.
                    self._remove(child)
            if delay > 0:
                for child in group:
                    if self._by_name.get(child.spec.name) is child and not child._terminated:
                        child.state = "backoff"
                if not await self._group_backoff(delay):
                    return  # stop() came during the backoff: start nobody just to stop them
            retry: tuple[ChildHandle, BaseException | None] | None = None
            for child in group:
                if (
                    self._by_name.get(child.spec.name) is not child
                    or child._terminated
                    or child._alive  # an operator's restart_child started it meanwhile
                ):
                    continue
                child.restarts += 1
                try:
                    await self._start(child)
                except ChildStartError as exc:
                    retry = (child, exc.error)
                    break
            if retry is None:
                return
            failed, error = retry
            if not self._intensity.add():
                if failed.spec.retry_after is not None:
                    # The group waits for its retry, which restarts the group.
                    self._intensity.take_back()
                    self._retry_later(failed)
                    return
                self._events.appendleft((FAIL, self._give_up(failed, error)))
                return
            delay = self._next_delay(failed)

    async def _group_backoff(self, delay: float) -> bool:
        """Wait a group restart's backoff; False if `stop()` came meanwhile.

        The manager holds the lock for a group restart, but not while it
        waits here: an operator's `terminate_child`, `restart_child` or
        `delete_child` acts at once on a child in backoff (the group restart
        then skips it), and `stop()` ends the wait, so that nobody waits out
        a backoff (SPEC §3).
        """
        assert self._lock is not None
        if any(event[0] == STOP for event in self._events):
            return False
        interrupt = self._interrupt = anyio.Event()
        self._lock.release()
        try:
            with anyio.move_on_after(delay):
                await interrupt.wait()
        finally:
            self._interrupt = None
            with anyio.CancelScope(shield=True):
                await self._lock.acquire()
        return not interrupt.is_set()

    # ------------------------------------------------------- delayed retries

    def _fail(self, child: ChildHandle) -> float | None:
        """Leave `child` ``failed``; with ``retry_after``, return its retry's delay.

        Sets ``child.retry_at``; the child's task (or one `_retry_later`
        spawns) then waits the delay in `_retry_wait`. Without
        ``retry_after`` the child stays failed until `restart_child` (OTP).
        """
        after = child.spec.retry_after
        if after is None:
            child.state = "failed"
            return None
        delay = self._retry_delay(child, after)
        child.retry_at = time.time() + delay
        child.state = "failed"
        logger.warning(
            "supervisor %r: child %r failed; retrying in %.3g s", self.name, child.spec.name, delay
        )
        return delay

    def _retry_delay(self, child: ChildHandle, after: float | Backoff) -> float:
        """The delay before `child`'s next retry: fixed, or its Backoff's next step."""
        up_since, child._up_since = child._up_since, None
        if not isinstance(after, Backoff):
            return float(after)
        # Up for a whole period (its own, for a subtree, if longer): not the
        # same failure as the last one, so the delays start over, as the
        # restart backoff's do.
        period = self.max_seconds
        if child.spec.kind == "supervisor":
            period = max(period, child.spec.target.max_seconds)
        if up_since is not None and anyio.current_time() - up_since >= period:
            child._retry_n = 0
        child._retry_n += 1
        return after.delay(child._retry_n, self._rng)

    def _retry_later(self, child: ChildHandle) -> None:
        """`child` failed to start and is not running: retry it later, if its spec says so."""
        delay = self._fail(child)
        if delay is not None and not self._stopping_all:
            self._spawn(child, None, retry=delay)

    async def _retry_wait(self, child: ChildHandle, delay: float) -> bool:
        """Wait a failed child's retry delay, then restart it as its strategy says.

        A retry does not count toward the intensity, as an operator's
        `restart_child` does not: its delay paces it already, and counting
        it would leave a supervisor with ``max_restarts=0`` retrying nothing
        (RabbitMQ's ``supervisor2`` counts it, and with a full intensity
        only schedules the next delay). ONE_FOR_ONE: True, the child's task
        runs it again. ONE_FOR_ALL / REST_FOR_ONE: the manager restarts the
        group, as after a crash, and the task ends. Stopping the child
        (`restart_child`, `terminate_child`, `delete_child`, `stop`) cancels
        the wait at once.
        """
        await anyio.sleep(delay)
        child.retry_at = None
        if self._stopping_all:
            return False
        logger.info("supervisor %r: retrying child %r", self.name, child.spec.name)
        if self.strategy is Strategy.ONE_FOR_ONE:
            child.restarts += 1
            child.state = "starting"
            return True
        self._post((GROUP, child, child._gen, 0.0))
        return False
