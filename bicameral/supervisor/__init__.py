"""An OTP-style supervision tree on anyio (Trio by default, asyncio too)."""

from bicameral.supervisor._process import DEVNULL, PIPE, ManagedProcess, open_process_group

__all__ = ["DEVNULL", "PIPE", "ManagedProcess", "open_process_group"]
