"""What a client's MCP server entry means to bicameral: the read side of ``mcp import``.

Claude Desktop (``claude_desktop_config.json``), Claude Code (``.mcp.json``,
``~/.claude.json``), Cursor (``.cursor/mcp.json``) and VS Code
(``.vscode/mcp.json``, whose object is ``servers``) describe a server with
the same entry: ``command`` / ``args`` / ``env`` / ``cwd`` for a local one,
``type`` (``http`` | ``sse``) / ``url`` / ``headers`` for a remote one.
:func:`convert_entry` turns one such entry into a
:class:`~bicameral.mcp._config.ServerConfig`, or says why it cannot;
:func:`parse_mcp_servers` reads the object out of a JSON file. Writing the
result into ``config.toml`` is :func:`bicameral.mcp._config_edit.import_entries`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bicameral.daemon import ConfigError
from bicameral.mcp._config import ServerConfig, _server, check_server_name

__all__ = [
    "ImportResult",
    "bicameral_name",
    "convert_entry",
    "parse_mcp_servers",
]

#: Entry keys of client configs that mean nothing to bicameral and are dropped quietly.
_CLIENT_ONLY_KEYS = frozenset(
    {"type", "disabled", "autoApprove", "alwaysAllow", "timeout", "description", "disabledTools"}
)
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


@dataclass
class ImportResult:
    """What :func:`import_servers` did.

    ``added``, ``replaced`` and ``unchanged`` (configured already, exactly
    so) are bicameral names; ``skipped`` and ``notes`` pair a name in the
    source file with a reason, one line each. ``renamed`` maps a source name
    that is not a valid server name to the name used. ``clashes`` names the
    servers skipped because bicameral has a different server of that name
    (``replace`` not given for them); ``names`` maps every source name that
    was added, replaced or found unchanged to its bicameral name, and
    ``configs`` holds each converted entry by bicameral name (clashes
    included). ``before`` and ``after`` are the config file's text around
    the edit (``before`` is ``None`` for a new file; both are ``None`` when
    nothing changed); a dry run fills them without writing.
    """

    source: Path
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    configs: dict[str, ServerConfig] = field(default_factory=dict)
    before: str | None = None
    after: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"source", "added", "replaced", "skipped": [{"name", "reason"}], ...}``."""
        return {
            "source": str(self.source),
            "added": self.added,
            "replaced": self.replaced,
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "notes": [{"name": n, "note": r} for n, r in self.notes],
            "renamed": self.renamed,
            "unchanged": self.unchanged,
            "clashes": self.clashes,
        }


def bicameral_name(name: str) -> str:
    """``name`` as a server name: itself when valid, else ``my.server`` -> ``my-server``.

    The result may still be invalid (nothing usable left): check it with
    :func:`~bicameral.mcp._config.check_server_name`.
    """
    if check_server_name(name) is None:
        return name
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", name)
    name = re.sub(r"_{2,}", "_", name)
    return name.strip("-")


def _string_list(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    out: list[str] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out.append(json.dumps(item))
        else:
            return None
    return out


def _entry(
    name: str, entry: Any, base: Path, notes: list[str]
) -> tuple[dict[str, Any] | None, str]:
    """A client's server entry as a bicameral table, or ``None`` and why it is skipped."""
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    kind = entry.get("type")
    url = entry.get("url") or entry.get("serverUrl")
    if kind in ("http", "streamable-http", "sse") or (kind is None and url is not None):
        return _remote_entry(name, entry, url, kind, notes)
    if kind is not None and kind != "stdio":
        return None, f"unknown server type {kind!r} (expected stdio, http or sse)"
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        return None, 'no "command" (a non-empty string)'
    table: dict[str, Any] = {"command": command}
    if "args" in entry and entry["args"] is not None:
        args = _string_list(entry["args"])
        if args is None:
            return None, '"args" is not a list of strings'
        if args:
            table["args"] = args
    if "env" in entry and entry["env"] is not None:
        env = entry["env"]
        if not isinstance(env, dict):
            return None, '"env" is not an object'
        converted: dict[str, str] = {}
        for key, value in env.items():
            if isinstance(value, str):
                converted[key] = value
            elif isinstance(value, int | float | bool):
                converted[key] = json.dumps(value)
            else:
                return None, f'"env" value of {key} is not a string'
        if converted:
            table["env"] = converted
    cwd = entry.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd:
            return None, '"cwd" is not a string'
        expanded = os.path.expanduser(cwd)
        table["cwd"] = cwd if os.path.isabs(expanded) else str(base / cwd)
        if not os.path.isdir(os.path.expanduser(table["cwd"])):
            return None, f'"cwd" {cwd!r} is not a directory ({table["cwd"]})'
    disabled = entry.get("disabled")
    if disabled is True:
        table["enabled"] = False
    ignored = sorted(k for k in entry if k not in _CLIENT_ONLY_KEYS and k not in table)
    ignored = [k for k in ignored if k not in ("args", "env", "url", "serverUrl")]
    if ignored:
        notes.append(f"ignored keys: {', '.join(ignored)}")
    texts = [command, *table.get("args", []), *table.get("env", {}).values()]
    if any(_PLACEHOLDER.search(t) for t in texts):
        notes.append(
            "uses ${...} placeholders, which bicameral passes on literally; "
            "put the real values in config.toml"
        )
    return table, ""


_CLIENT_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _remote_entry(
    name: str, entry: dict[str, Any], url: Any, kind: Any, notes: list[str]
) -> tuple[dict[str, Any] | None, str]:
    """A client's remote (``http`` / ``sse`` / ``url``) entry as a bicameral table."""
    if not isinstance(url, str) or not url:
        return None, f'a {kind or "remote"} server needs a "url"'
    table: dict[str, Any] = {"url": url}
    if kind == "sse":
        table["transport"] = "sse"
    elif kind is None and url.rstrip("/").endswith("/sse"):
        # Cursor's bare "url" entries may be either transport: its endpoint
        # name says which.
        table["transport"] = "sse"
        notes.append(
            'taken as a legacy SSE server (its URL ends in /sse); else set transport = "http"'
        )
    headers = entry.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return None, '"headers" is not an object of strings'
        # Claude Code and Cursor spell environment references ${NAME};
        # bicameral spells them ${env:NAME} (expanded by the daemon).
        converted = {k: _CLIENT_VAR.sub(r"${env:\1}", v) for k, v in headers.items()}
        if converted:
            table["headers"] = converted
    if entry.get("disabled") is True:
        table["enabled"] = False
    ignored = sorted(
        k
        for k in entry
        if k not in _CLIENT_ONLY_KEYS and k not in ("url", "serverUrl", "headers", "oauth")
    )
    if ignored:
        notes.append(f"ignored keys: {', '.join(ignored)}")
    if "oauth" in entry:
        table["auth"] = "oauth"
        oauth = entry["oauth"] if isinstance(entry["oauth"], dict) else {}
        if isinstance(oauth.get("clientId"), str):
            table["client_id"] = oauth["clientId"]
        if isinstance(oauth.get("scope"), str):
            table["scope"] = oauth["scope"]
        notes.append(f"OAuth: log in once with `bicameral mcp login {name}`")
    return table, ""


def parse_mcp_servers(source: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The ``mcpServers`` (or VS Code ``servers``) object of a client config file.

    Returns the object and file-level notes. A missing or unreadable file,
    invalid JSON or no such object is a :class:`ConfigError`.
    """
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a JSON file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # editors on Windows may add a BOM
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not valid UTF-8 ({exc.reason})") from None
    if not isinstance(data, dict):
        raise ConfigError(f'{source}: expected a JSON object with "mcpServers"')
    notes: list[tuple[str, str]] = []
    servers = data.get("mcpServers")
    if servers is None and isinstance(data.get("servers"), dict):
        servers = data["servers"]  # VS Code's .vscode/mcp.json
    projects = data.get("projects")
    if isinstance(projects, dict):  # ~/.claude.json: per-project servers
        count = sum(
            len(p["mcpServers"])
            for p in projects.values()
            if isinstance(p, dict) and isinstance(p.get("mcpServers"), dict)
        )
        if count:
            notes.append(
                (
                    "projects",
                    f'{count} project-scoped server(s) under "projects" were not imported '
                    "(only the top-level mcpServers)",
                )
            )
    if servers is None:
        if notes:
            return {}, notes
        raise ConfigError(
            f'{source}: no "mcpServers" object (expected a Claude Desktop, Claude Code '
            "or Cursor MCP config)"
        )
    if not isinstance(servers, dict):
        raise ConfigError(f'{source}: "mcpServers" is not a JSON object')
    return servers, notes


def convert_entry(
    name: str, entry: Any, source: Path, base: Path
) -> tuple[ServerConfig | None, str, list[str]]:
    """A client's server ``entry`` as the server ``name``: ``(config, "", notes)``.

    Or ``(None, reason, notes)`` when it cannot be imported. ``source`` names
    the file in messages; a relative ``cwd`` is taken from ``base``. The
    config keeps the file's own spelling of ``cwd`` (``~/x``), as it is
    written into ``config.toml``.
    """
    notes: list[str] = []
    table, reason = _entry(name, entry, base, notes)
    if table is None:
        return None, reason, notes
    try:
        config = _server(str(source), name, table)
    except ConfigError as exc:
        return None, str(exc).split("] ", 1)[-1], notes
    if not config.remote:
        config = dataclasses.replace(config, cwd=table.get("cwd"))
    return config, "", notes
