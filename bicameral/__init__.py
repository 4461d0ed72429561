"""bicameral: one Trio daemon per user that keeps MCP servers alive under an OTP-style supervisor."""

__version__ = "0.1.0"

__all__ = ["__version__"]
