"""How long to wait before restarting a child that keeps crashing."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart delay with jitter, per child.

    Before restart *n* of a child (n = 1 for the first restart after it was
    last healthy), the supervisor waits::

        min(maximum, initial * factor ** (n - 1)) * uniform(1 - jitter, 1 + jitter)

    `n` goes back to 1 once the child has stayed up (running) for the
    supervisor's `max_seconds`. The default, ``initial=0.0``, restarts at once,
    as OTP's `supervisor` does; then no random number is drawn and the
    supervisor does not even yield to the scheduler before restarting.

    One ONE_FOR_ALL / REST_FOR_ONE restart waits once, by the failed child's
    step. An operator's `Supervisor.restart_child` never waits.
    """

    initial: float = 0.0
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("Backoff delays must be >= 0")
        if self.factor < 1:
            raise ValueError("Backoff.factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff.jitter must be within [0, 1]")

    def delay(self, n: int, rng: random.Random | None = None) -> float:
        """The delay in seconds before restart number `n` (1-based)."""
        if self.initial == 0 or n < 1:
            return 0.0
        try:
            base = min(self.maximum, self.initial * self.factor ** (n - 1))
        except OverflowError:
            base = self.maximum
        if self.jitter:
            base *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base
