"""MCP server configuration: the ``[mcp.servers.NAME]`` tables of ``config.toml``.

The read side only, on the standard library's :mod:`tomllib`, because the
daemon reads it at every start and reload. Editing (``bicameral mcp add`` and
friends, with tomlkit so comments survive) lives in
:mod:`bicameral.mcp._config_edit`.

A server table::

    [mcp.servers.files]
    command = "npx"                                  # required, non-empty
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me"]
    env = { LOG_LEVEL = "info" }                     # string -> string
    cwd = "/home/me"                                 # absolute (or ~/...)
    enabled = true

Every problem is a :class:`~bicameral.daemon.ConfigError` whose one-line
message names the file, the server and the field, for example
``config.toml: [mcp.servers.files] "args" must be a list of strings``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError, read_regular
from bicameral.mcp._common import CALL_WAIT, SESSION_IDLE

if TYPE_CHECKING:
    from bicameral.mcp.surface import SurfaceConfig

__all__ = [
    "AUTH_MODES",
    "RULE_TABLES",
    "SERVER_KEYS",
    "SHARE_MODES",
    "TRANSPORTS",
    "ServerConfig",
    "check_server_name",
    "check_url",
    "expand_env",
    "has_stored_tokens",
    "load_mcp",
    "load_ready_timeout",
    "load_servers",
    "load_session_idle",
    "read_config",
    "read_text",
    "token_path",
]

#: The keys a ``[mcp.servers.NAME]`` table may hold.
SERVER_KEYS = (
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "transport",
    "headers",
    "auth",
    "token",
    "scope",
    "client_id",
    "client_secret",
    "client_metadata_url",
    "enabled",
    "share",
    "max_instances",
    "era",
    "call_timeout",
    # What clients are offered of it (bicameral.mcp.surface, docs/tools.md).
    "tools",
    "prompts",
    "resources",
)
#: The keys of a server's table that are its rules, not how to launch it:
#: replacing the server (``mcp add --replace``, an import) keeps them.
RULE_TABLES = ("tools", "prompts", "resources")

#: How a remote server is spoken to: streamable HTTP (either era) or legacy SSE.
TRANSPORTS = ("http", "sse")
#: How a remote server is authenticated.
AUTH_MODES = ("none", "bearer", "oauth")

#: How a server's instances are shared among clients (docs/mcp.md, "Sharing").
SHARE_MODES = ("auto", "shared", "per-client")

#: Which protocol era bicameral speaks to a server (docs/mcp.md, "Protocol eras"):
#: ``auto`` tries the ``initialize`` handshake and discovers a server that
#: refuses it; ``handshake`` only the former, ``stateless`` only ``server/discover``.
ERAS = ("auto", "handshake", "stateless")

#: The keys the ``[mcp]`` table may hold (a typo such as ``[mcp.server.x]`` is an error).
MCP_KEYS = ("ready_timeout", "session_idle", "servers", "profiles")


_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[^=\x00]+")


@dataclass(frozen=True)
class ServerConfig:
    """One configured MCP server: how to launch it.

    Frozen and made of tuples, so it is hashable and two loads of the same
    table compare equal (the daemon leaves an unchanged server running across
    a reload). ``env`` is sorted by name and holds only the variables set here;
    the server inherits the daemon's environment beneath them.
    """

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    enabled: bool = True
    share: str = "auto"
    #: Instances (processes or remote sessions) of this server at most, the
    #: primary and the warm spare included (docs/mcp.md, "Sharing").
    max_instances: int = 32
    #: The protocol era spoken to it (`ERAS`).
    era: str = "auto"
    #: Seconds a call may wait for its answer from a remote server before it
    #: is cut as stalled (docs/mcp.md, "Remote servers").
    call_timeout: float = 60.0
    #: A remote server's endpoint (then there is no command).
    url: str | None = None
    transport: str = "http"
    #: Sent with every request; values may hold ``${env:NAME}``.
    headers: tuple[tuple[str, str], ...] = ()
    auth: str = "none"
    #: The bearer token (``auth = "bearer"``); may hold ``${env:NAME}``.
    token: str | None = None
    #: OAuth (``auth = "oauth"``): the scope to ask for, a pre-registered
    #: client id (and its secret, which may hold ``${env:NAME}``), a Client ID
    #: Metadata Document URL.
    scope: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    client_metadata_url: str | None = None

    @property
    def remote(self) -> bool:
        """Whether this is a remote server (``url``), not a local command."""
        return self.url is not None

    def env_dict(self) -> dict[str, str]:
        """``env`` as a dict."""
        return dict(self.env)

    def argv(self) -> list[str]:
        """The command line: ``[command, *args]`` (a remote server: its URL)."""
        return [self.command, *self.args] if not self.remote else [str(self.url)]


def check_server_name(name: object) -> str | None:
    """Why ``name`` cannot name a server, or ``None`` when it can.

    Names are ``[A-Za-z0-9_-]+`` without ``__``: the aggregating bridge
    exposes tools as ``<server>__<tool>``, so the server part must be
    unambiguous and the name must stay a bare TOML key.
    """
    if not isinstance(name, str) or not name:
        return "a server name must be a non-empty string"
    if not _NAME.fullmatch(name):
        return (
            f"invalid server name {name!r}: use only letters, digits, '-' and '_' "
            "(tools are exposed as <server>__<tool>)"
        )
    if "__" in name:
        return (
            f"invalid server name {name!r}: it must not contain '__' "
            "(tools are exposed as <server>__<tool>)"
        )
    return None


def _file(path: Path | None) -> str:
    return str(path) if path is not None else "config.toml"


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def read_config(path: Path) -> dict[str, Any]:
    """Parse ``path`` as TOML; a missing file is an empty configuration.

    An unreadable file or a syntax error is a :class:`ConfigError` naming the
    file (and, for syntax errors, the line and column).
    """
    import tomllib

    text = read_text(path)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def read_text(path: Path) -> str | None:
    """The config file's text, ``None`` when it does not exist.

    Unreadable (a directory, a FIFO, no permission) or not UTF-8 is a
    :class:`ConfigError` naming the file.
    """
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason})") from None


def load_ready_timeout(config: Mapping[str, Any], path: Path | None) -> float:
    """``[mcp] ready_timeout``: seconds a call waits for a (re)starting server (default 10)."""
    return _seconds(config, path, "ready_timeout", CALL_WAIT)


def load_session_idle(config: Mapping[str, Any], path: Path | None) -> float:
    """``[mcp] session_idle``: seconds a quiet HTTP session is kept (default 60)."""
    return _seconds(config, path, "session_idle", SESSION_IDLE)


def _seconds(config: Mapping[str, Any], path: Path | None, key: str, default: float) -> float:
    mcp = config.get("mcp")
    if not isinstance(mcp, Mapping) or key not in mcp:
        return default
    value = mcp[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConfigError(
            f"{_file(path)}: [mcp] {key} must be a number of seconds "
            f"between 0 and 3600, not {value!r}"
        )
    return float(value)


def load_mcp(
    config: Mapping[str, Any], path: Path | None
) -> tuple[dict[str, ServerConfig], SurfaceConfig]:
    """`load_servers`, and what clients are offered of them: the tables of docs/tools.md.

    ``[mcp.servers.NAME.tools]`` (``.prompts``, ``.resources``) and
    ``[mcp.profiles.NAME]``, validated by `bicameral.mcp.surface.load_surface`
    with the same one-line :class:`ConfigError` naming file, table and key.
    """
    from bicameral.mcp.surface import load_surface

    servers = load_servers(config, path)
    return servers, load_surface(config, _file(path), servers)


def load_servers(config: Mapping[str, Any], path: Path | None) -> dict[str, ServerConfig]:
    """Validate ``config["mcp"]["servers"]`` and return its servers by name, in file order.

    ``config`` is the whole parsed ``config.toml`` (other top-level tables
    are not looked at); ``path`` only names the file in messages. A missing
    ``[mcp]`` or ``[mcp.servers]`` means no servers. Disabled servers are
    returned too, with ``enabled=False``.

    Raises :class:`ConfigError` on the first problem: a server name outside
    ``[A-Za-z0-9_-]+`` or containing ``__``, a missing or empty ``command``,
    ``args`` not a list of strings, ``env`` not a table of strings, ``cwd``
    not an absolute path (``~`` is expanded), ``enabled`` not a boolean, or an
    unknown key.
    """
    where = _file(path)
    mcp = config.get("mcp")
    if mcp is None:
        return {}
    if not isinstance(mcp, Mapping):
        raise ConfigError(f'{where}: "mcp" must be a table ([mcp]), not {_type_name(mcp)}')
    for key in mcp:
        if key not in MCP_KEYS:
            raise ConfigError(
                f"{where}: [mcp] unknown key {key!r} (expected: {', '.join(MCP_KEYS)}; "
                "servers go in [mcp.servers.NAME], profiles in [mcp.profiles.NAME])"
            )
    servers = mcp.get("servers")
    if servers is None:
        return {}
    if not isinstance(servers, Mapping):
        raise ConfigError(
            f'{where}: "mcp.servers" must be a table of [mcp.servers.NAME] tables, '
            f"not {_type_name(servers)}"
        )
    result: dict[str, ServerConfig] = {}
    for name, table in servers.items():
        problem = check_server_name(name)
        if problem is not None:
            raise ConfigError(f"{where}: [mcp.servers] {problem}")
        result[name] = _server(where, name, table)
    return result


def _server(where: str, name: str, table: object) -> ServerConfig:
    head = f"{where}: [mcp.servers.{name}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{head} must be a table, not {_type_name(table)}")
    for key in table:
        if key not in SERVER_KEYS:
            raise ConfigError(
                f"{head} unknown key {key!r} (expected one of: {', '.join(SERVER_KEYS)})"
            )

    if "url" in table:
        return _remote_server(head, name, table)
    if "command" not in table:
        raise ConfigError(f'{head} "command" is required (the program to run), or "url"')
    for key in ("transport", "headers", "auth", "token"):
        if key in table:
            raise ConfigError(f'{head} "{key}" is for a remote server (one with a "url")')
    command = table["command"]
    if not isinstance(command, str):
        raise ConfigError(f'{head} "command" must be a string, not {_type_name(command)}')
    if not command.strip():
        raise ConfigError(f'{head} "command" must not be empty')
    if "\x00" in command:
        raise ConfigError(f'{head} "command" must not contain a NUL character')

    args = table.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f'{head} "args" must be a list of strings')
    if any("\x00" in a for a in args):
        raise ConfigError(f'{head} "args" must not contain a NUL character')

    env = table.get("env", {})
    if not isinstance(env, Mapping):
        raise ConfigError(
            f'{head} "env" must be a table of strings (env = {{ NAME = "value" }}), '
            f"not {_type_name(env)}"
        )
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise ConfigError(f'{head} "env" has an invalid variable name {key!r}')
        if not isinstance(value, str):
            raise ConfigError(
                f'{head} "env" value of {key} must be a string, not {_type_name(value)}'
            )
        if "\x00" in value:
            raise ConfigError(f'{head} "env" value of {key} must not contain a NUL character')

    cwd = table.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd:
            raise ConfigError(f'{head} "cwd" must be a non-empty string (a directory)')
        expanded = os.path.expanduser(cwd)
        if not os.path.isabs(expanded):
            raise ConfigError(
                f'{head} "cwd" must be an absolute path (or start with ~), not {cwd!r}'
            )
        cwd = expanded

    if "call_timeout" in table:
        raise ConfigError(f'{head} "call_timeout" is for a remote server (one with a "url")')
    return ServerConfig(
        name=name,
        command=command,
        args=tuple(args),
        env=tuple(sorted(env.items())),
        cwd=cwd,
        **_common(head, table),
    )


def _common(head: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """``enabled``, ``share``, ``max_instances``, checked (local and remote servers alike)."""
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f'{head} "enabled" must be true or false, not {_type_name(enabled)}')
    share = table.get("share", "auto")
    if share not in SHARE_MODES:
        raise ConfigError(
            f'{head} "share" must be one of {", ".join(repr(m) for m in SHARE_MODES)}, '
            f"not {share!r}"
        )
    cap = table.get("max_instances", ServerConfig.max_instances)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 2:
        raise ConfigError(
            f'{head} "max_instances" must be a whole number of at least 2 '
            f"(the primary instance and one more), not {cap!r}"
        )
    era = table.get("era", "auto")
    if era not in ERAS:
        raise ConfigError(
            f'{head} "era" must be one of {", ".join(repr(e) for e in ERAS)}, not {era!r}'
        )
    return {"enabled": enabled, "share": share, "max_instances": cap, "era": era}


_ENV_REF = re.compile(r"\$\{env:([^}]*)\}")


def _remote_server(head: str, name: str, table: Mapping[str, Any]) -> ServerConfig:
    for key in ("command", "args", "env", "cwd"):
        if key in table:
            raise ConfigError(f'{head} has both "url" and "{key}": a server is one or the other')
    url = table["url"]
    if not isinstance(url, str) or not url:
        raise ConfigError(f'{head} "url" must be a non-empty string')
    problem = check_url(url)
    if problem is not None:
        raise ConfigError(f'{head} "url" {problem}')
    transport = table.get("transport", "http")
    if transport not in TRANSPORTS:
        raise ConfigError(
            f'{head} "transport" must be "http" (streamable HTTP) or "sse", not {transport!r}'
        )
    headers = table.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f'{head} "headers" must be a table of strings ({{ Name = "value" }})')
    for key, value in headers.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", key):
            raise ConfigError(f'{head} "headers" has an invalid header name {key!r}')
        if any(c in value for c in "\r\n\x00"):
            raise ConfigError(f'{head} "headers" value of {key} must be one line')
        _check_env_refs(head, f"headers.{key}", value)
    auth = table.get("auth", "none")
    if auth not in AUTH_MODES:
        raise ConfigError(f'{head} "auth" must be "none", "bearer" or "oauth", not {auth!r}')
    oauth: dict[str, str | None] = {}
    for key in ("scope", "client_id", "client_secret", "client_metadata_url"):
        value = table.get(key)
        if value is not None and auth != "oauth":
            raise ConfigError(f'{head} "{key}" is only used with auth = "oauth"')
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f'{head} "{key}" must be a non-empty string')
        oauth[key] = value
    secret = oauth["client_secret"]
    if secret is not None:
        if oauth["client_id"] is None:
            raise ConfigError(f'{head} "client_secret" needs the "client_id" it belongs to')
        if any(c in secret for c in "\r\n\x00"):
            raise ConfigError(f'{head} "client_secret" must be one line')
        _check_env_refs(head, "client_secret", secret)
    cimd = oauth["client_metadata_url"]
    if cimd is not None and not cimd.startswith("https://"):
        raise ConfigError(f'{head} "client_metadata_url" must be an https:// URL')
    token = table.get("token")
    if auth == "bearer":
        if not isinstance(token, str) or not token:
            raise ConfigError(f'{head} auth = "bearer" needs token = "..." (or "${{env:NAME}}")')
        if any(c in token for c in "\r\n\x00"):
            raise ConfigError(f'{head} "token" must be one line')
        _check_env_refs(head, "token", token)
    elif token is not None:
        raise ConfigError(f'{head} "token" is only used with auth = "bearer"')
    call_timeout = table.get("call_timeout", ServerConfig.call_timeout)
    if (
        not isinstance(call_timeout, int | float)
        or isinstance(call_timeout, bool)
        or not call_timeout > 0
    ):
        raise ConfigError(f'{head} "call_timeout" must be a positive number of seconds')
    return ServerConfig(
        name=name,
        url=url,
        transport=transport,
        headers=tuple(sorted(headers.items())),
        auth=auth,
        token=token,
        scope=oauth["scope"],
        client_id=oauth["client_id"],
        client_secret=secret,
        client_metadata_url=cimd,
        call_timeout=float(call_timeout),
        **_common(head, table),
    )


def check_url(url: str) -> str | None:
    """Why `url` cannot be a remote server's endpoint, or ``None`` when it can.

    Only ``https://``, and ``http://`` to this machine (a loopback address):
    bearer tokens and session ids must not cross a network in clear text.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return f"must be an http(s):// URL, not {url!r}"
    if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
        return f"must use https:// for a server that is not on this machine ({host})"
    return None


def token_path(home: Path, name: str) -> Path:
    """Where a server's OAuth tokens and client registration live (0600)."""
    return home / "tokens" / f"{name}.json"


def has_stored_tokens(home: Path, name: str) -> bool:
    """Whether ``mcp login`` stored OAuth tokens for `name` (in the file or the keyring)."""
    import json

    try:
        data = json.loads(token_path(home, name).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (
        isinstance(data.get("tokens"), dict) or data.get("keyring") is True
    )


def _check_env_refs(head: str, where: str, value: str) -> None:
    for ref in _ENV_REF.findall(value):
        if not ref or not _ENV_NAME.fullmatch(ref):
            raise ConfigError(f'{head} "{where}" has an invalid ${{env:...}} reference {ref!r}')


def expand_env(value: str, environ: Mapping[str, str]) -> str:
    """``value`` with each ``${env:NAME}`` replaced by that variable.

    Raises:
      KeyError: a variable it names is not set (the message names it).
    """

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise KeyError(f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF.sub(one, value)
