"""The MCP clients bicameral knows, and where each keeps its servers on each platform.

:func:`known_clients` is a pure function of the platform, the home
directory, the environment and the current directory, so the paths for
macOS and Windows are computed (and tested) on Linux too. Sources, checked
against each client's documentation:

- Claude Desktop: ``claude_desktop_config.json`` in ``~/Library/Application
  Support/Claude`` (macOS), ``%APPDATA%\\Claude`` (Windows), and
  ``$XDG_CONFIG_HOME/Claude`` (``~/.config/Claude``) for the Linux builds;
  object ``mcpServers``; local servers only.
- Claude Code: user scope in ``~/.claude.json`` (``$CLAUDE_CONFIG_DIR/.claude.json``
  when that is set), project scope in ``.mcp.json`` at the project root;
  object ``mcpServers``.
- Cursor: ``~/.cursor/mcp.json``, and ``.cursor/mcp.json`` in a project.
- VS Code: ``mcp.json`` in the user profile (``Code/User`` under
  ``~/Library/Application Support``, ``%APPDATA%`` or ``~/.config``), and
  ``.vscode/mcp.json`` in a workspace; object ``servers``; JSONC.
- Windsurf: ``~/.codeium/windsurf/mcp_config.json``; remote servers as
  ``serverUrl``.
- Codex CLI: ``~/.codex/config.toml`` (``$CODEX_HOME/config.toml``), tables
  ``[mcp_servers.NAME]``.
- Gemini CLI: ``~/.gemini/settings.json``, and ``.gemini/settings.json`` in a
  project; object ``mcpServers``; ``httpUrl`` for streamable HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath, PureWindowsPath

from bicameral.daemon import ConfigError

__all__ = ["Client", "find_client", "known_clients"]


@dataclass(frozen=True)
class Client:
    """One client's config file and how its server entries are written.

    ``dialect`` says how an entry looks (:mod:`._dialect`); ``key`` is the
    path of the servers object in the file; ``http`` whether the client can
    reach a server by URL (``client setup --http``).
    """

    name: str
    label: str
    path: PurePath
    dialect: str
    format: str = "json"
    key: tuple[str, ...] = ("mcpServers",)
    http: bool = True
    scope: str = "user"


def _app_data(platform: str, home: PurePath, env: Mapping[str, str]) -> PurePath:
    """Where desktop apps keep per-user settings: Application Support, %APPDATA%, XDG."""
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform == "win32":
        return PureWindowsPath(env["APPDATA"]) if env.get("APPDATA") else home / "AppData/Roaming"
    xdg = env.get("XDG_CONFIG_HOME")
    return PurePosixPath(xdg) if xdg and xdg.startswith("/") else home / ".config"


def known_clients(platform: str, home: str, env: Mapping[str, str], cwd: str) -> list[Client]:
    """Every known client with its config path on ``platform`` (a `Platform` value: ``linux``,
    ``darwin``, ``win32``).

    ``home`` is the user's home directory and ``cwd`` the project directory
    (for the project-scoped files), both as that platform spells them.
    """
    pure = PureWindowsPath if platform == "win32" else PurePosixPath
    h, here = pure(home), pure(cwd)
    app = _app_data(platform, h, env)
    claude_dir = pure(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else h
    codex_dir = pure(env["CODEX_HOME"]) if env.get("CODEX_HOME") else h / ".codex"
    return [
        Client(
            "claude-desktop",
            "Claude Desktop",
            app / "Claude" / "claude_desktop_config.json",
            "claude",
            http=False,
        ),
        Client("claude-code", "Claude Code (user)", claude_dir / ".claude.json", "claude"),
        Client(
            "claude-code-project",
            "Claude Code (project)",
            here / ".mcp.json",
            "claude",
            scope="project",
        ),
        Client("cursor", "Cursor", h / ".cursor" / "mcp.json", "cursor"),
        Client(
            "cursor-project",
            "Cursor (project)",
            here / ".cursor" / "mcp.json",
            "cursor",
            scope="project",
        ),
        Client("vscode", "VS Code", app / "Code" / "User" / "mcp.json", "vscode", key=("servers",)),
        Client(
            "vscode-workspace",
            "VS Code (workspace)",
            here / ".vscode" / "mcp.json",
            "vscode",
            key=("servers",),
            scope="project",
        ),
        Client("windsurf", "Windsurf", h / ".codeium" / "windsurf" / "mcp_config.json", "windsurf"),
        Client(
            "codex", "Codex CLI", codex_dir / "config.toml", "codex", "toml", key=("mcp_servers",)
        ),
        Client("gemini", "Gemini CLI", h / ".gemini" / "settings.json", "gemini"),
        Client(
            "gemini-project",
            "Gemini CLI (project)",
            here / ".gemini" / "settings.json",
            "gemini",
            scope="project",
        ),
    ]


def find_client(clients: list[Client], name: str) -> Client:
    """The client called ``name``; a :class:`ConfigError` listing the known ones otherwise."""
    for client in clients:
        if client.name == name:
            return client
    known = ", ".join(c.name for c in clients)
    raise ConfigError(f"unknown client {name!r}; known clients: {known}")
