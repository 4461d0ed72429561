"""How each client spells a server entry: what to import, and what to write back.

Every client describes a local server as ``command`` / ``args`` / ``env``,
but the remote ones differ (``url`` + ``type``, Windsurf's ``serverUrl``,
Gemini's ``httpUrl`` for streamable HTTP and ``url`` for SSE, Codex's
``url`` + ``http_headers`` + ``bearer_token_env_var``). Here:

- :func:`launch_keys`: the keys that say how to reach the server. Setup
  replaces exactly these; every other key (``disabled``, ``timeout``,
  ``trust``, ``autoApprove``, ``enabled_tools``...) is the client's own
  business and stays in the entry as it was;
- :func:`import_entry`: an entry in the ``mcpServers`` shape that
  :func:`bicameral.mcp.import_entries` reads;
- :func:`bridge_entry` / :func:`http_entry`: the launch keys that make the
  client go through bicameral;
- :func:`through_bicameral`: which bicameral server an entry already goes
  through, if any.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "bridge_entry",
    "http_entry",
    "import_entry",
    "launch_keys",
    "through_bicameral",
]

_COMMON = frozenset({"type", "command", "args", "env", "cwd", "url", "headers", "transport"})
_LAUNCH = {
    "claude": _COMMON | {"oauth"},
    "cursor": _COMMON | {"envFile", "oauth"},
    "vscode": _COMMON | {"envFile", "dev"},
    "windsurf": _COMMON | {"serverUrl"},
    "gemini": _COMMON | {"httpUrl", "oauth", "authProviderType"},
    "codex": frozenset(
        {
            "command",
            "args",
            "env",
            "env_vars",
            "cwd",
            "url",
            "bearer_token",
            "bearer_token_env_var",
            "http_headers",
            "env_http_headers",
            "transport",
        }
    ),
}


def launch_keys(dialect: str) -> frozenset[str]:
    """The keys of an entry that say how to start or reach its server."""
    return _LAUNCH[dialect]


def import_entry(dialect: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry``'s launch keys in the ``mcpServers`` shape (plus ``disabled``)."""
    keys = _LAUNCH[dialect]
    out = {k: v for k, v in entry.items() if k in keys}
    if dialect == "gemini":
        if "httpUrl" in out:
            out = {k: v for k, v in out.items() if k not in ("httpUrl", "url")}
            out.update(type="http", url=entry["httpUrl"])
        elif "url" in out:
            out["type"] = "sse"  # Gemini's "url" is the legacy SSE transport
    elif dialect == "codex":
        out = _codex_import(entry)
    if entry.get("disabled") is True or (dialect == "codex" and entry.get("enabled") is False):
        out["disabled"] = True
    return out


def _codex_import(entry: Mapping[str, Any]) -> dict[str, Any]:
    if "url" not in entry:
        return {k: entry[k] for k in ("command", "args", "env", "cwd", "env_vars") if k in entry}
    headers: dict[str, Any] = {}
    if isinstance(entry.get("http_headers"), Mapping):
        headers.update(entry["http_headers"])
    if isinstance(entry.get("env_http_headers"), Mapping):
        headers.update({k: f"${{{v}}}" for k, v in entry["env_http_headers"].items()})
    if isinstance(entry.get("bearer_token_env_var"), str):
        headers["Authorization"] = f"Bearer ${{{entry['bearer_token_env_var']}}}"
    elif isinstance(entry.get("bearer_token"), str):
        headers["Authorization"] = f"Bearer {entry['bearer_token']}"
    out: dict[str, Any] = {"type": "http", "url": entry["url"]}
    if headers:
        out["headers"] = headers
    return out


def bridge_entry(dialect: str, argv: list[str], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The launch keys that run ``argv`` (``bicameral ... mcp --server X``) over stdio."""
    out: dict[str, Any] = {}
    if dialect == "vscode" or (dialect != "codex" and "type" in entry):
        out["type"] = "stdio"
    out["command"] = argv[0]
    out["args"] = argv[1:]
    return out


def http_entry(dialect: str, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The launch keys that reach ``url`` (the listener's ``/mcp/X``) with ``headers``."""
    if dialect == "windsurf":
        return {"serverUrl": url, "headers": dict(headers)}
    if dialect == "gemini":
        return {"httpUrl": url, "headers": dict(headers)}
    if dialect == "codex":
        return {"url": url, "http_headers": dict(headers)}
    return {"type": "http", "url": url, "headers": dict(headers)}


def _is_bicameral(program: str) -> bool:
    base = os.path.basename(program.replace("\\", "/")).lower()
    return base in ("bicameral", "bicameral.exe", "bicameral.cmd")


def through_bicameral(dialect: str, entry: Any, token: str | None = None) -> str | None:
    """The bicameral server ``entry`` goes through (``"*"``: the aggregated view), or ``None``.

    A command that is ``bicameral`` (any path) with ``mcp`` among its
    arguments is the stdio bridge; a URL on a loopback host whose path is
    ``/mcp`` or ``/mcp/NAME``, sent with the listener's ``token``, is the
    listener (a loopback ``/mcp`` without it is some other local server).
    """
    if not isinstance(entry, Mapping):
        return None
    command, args = entry.get("command"), entry.get("args") or []
    if isinstance(command, str) and isinstance(args, list):
        words = [str(a) for a in args]
        if words[:2] == ["-m", "bicameral"]:
            command, words = "bicameral", words[2:]
        if _is_bicameral(command) and "mcp" in words:
            for i, word in enumerate(words):
                if word == "--server" and i + 1 < len(words):
                    return words[i + 1]
                if word.startswith("--server="):
                    return word.partition("=")[2]
            return "*"
        return None
    plain = import_entry(dialect, entry)
    url = plain.get("url") or entry.get("serverUrl")
    headers = plain.get("headers") or entry.get("headers") or {}
    if not isinstance(url, str) or token is None or not isinstance(headers, Mapping):
        return None
    if f"Bearer {token}" not in {str(v) for v in headers.values()}:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    path = parts.path.rstrip("/")
    if not loopback or not (path == "/mcp" or path.startswith("/mcp/")):
        return None
    return "*" if path == "/mcp" else path[len("/mcp/") :]
