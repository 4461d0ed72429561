"""An OTP-style supervision tree on anyio: Trio by default, asyncio too.

`Supervisor` keeps `ChildSpec` children alive by Erlang/OTP's rules
(strategies, restart types, restart intensity, escalation through nested
supervisors), with readiness, graceful stops and backoff. Process children
(`Command`, `open_process_group`) run in their own process group so that
stopping one stops its grandchildren too. The contract is SPEC §3.
"""

from bicameral.supervisor._backoff import Backoff
from bicameral.supervisor._child import ChildHandle, StopFlag, current_child
from bicameral.supervisor._command import Command
from bicameral.supervisor._errors import (
    ChildStartError,
    ProcessExitedError,
    RestartIntensityExceeded,
)
from bicameral.supervisor._process import DEVNULL, PIPE, ManagedProcess, open_process_group
from bicameral.supervisor._spec import ChildSpec, Restart, Strategy
from bicameral.supervisor._supervisor import Supervisor

__all__ = [
    "DEVNULL",
    "PIPE",
    "Backoff",
    "ChildHandle",
    "ChildSpec",
    "ChildStartError",
    "Command",
    "ManagedProcess",
    "ProcessExitedError",
    "Restart",
    "RestartIntensityExceeded",
    "StopFlag",
    "Strategy",
    "Supervisor",
    "current_child",
    "open_process_group",
]
