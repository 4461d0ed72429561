"""bicameral: one Trio daemon per user keeping MCP servers alive under an OTP-style supervisor."""

__version__ = "0.1.0"

__all__ = ["__version__"]
