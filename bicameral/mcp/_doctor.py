"""``bicameral doctor``, the MCP half: is ``config.toml`` valid, can each server run?

- ``config``: the file parses and validates exactly as the daemon will read it
  (:func:`~bicameral.mcp._config.read_config` and
  :func:`~bicameral.mcp._config.load_servers`); a file group or others can
  read is a warning, since ``env`` often holds tokens.
- ``mcp-server:NAME``, one per configured server: its ``cwd`` exists and its
  ``command`` can be found the way the daemon will launch it; for a remote
  (``url``) server, that its ``${env:...}`` values are set and, with OAuth,
  that a login was done (`check_remote`; nothing is sent to it). The environment
  is the running daemon's when there is one (`bicameral.platform.process_environ`),
  else this process's, with the server's ``env`` over it. A command without
  ``/`` is looked up on that ``PATH`` (relative ``PATH`` entries, and a
  command with a ``/``, are taken from the server's ``cwd``, or from the state
  directory, where a detached daemon runs).

Standard library only, like the configuration reader.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from bicameral.daemon import OK, PROBLEM, WARNING, Check, daemon_environ, run_checks
from bicameral.platform import checks_mode_bits

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bicameral.daemon import DaemonPaths
    from bicameral.mcp._config import ServerConfig

__all__ = ["check_config", "check_remote", "check_server", "mcp_checks"]


def check_config(paths: DaemonPaths) -> tuple[list[Check], dict[str, ServerConfig] | None]:
    """The configuration's checks, and its servers when it is valid."""
    from bicameral.daemon import ConfigError
    from bicameral.mcp._config import load_servers, read_config

    path = paths.config
    fix = f"edit {path}; `bicameral mcp list` shows what it means once valid"
    if not os.path.lexists(path):
        if paths.config_explicit:
            return [
                Check(
                    "config",
                    PROBLEM,
                    f"config file {path} does not exist; the daemon will not start with it",
                    "create it (`bicameral mcp add` does) or drop --config",
                )
            ], None
        return [
            Check("config", OK, f"no {path}: no MCP servers configured (`bicameral mcp add`)")
        ], {}
    try:
        servers = load_servers(read_config(path), path)
    except ConfigError as exc:
        return [Check("config", PROBLEM, str(exc), fix)], None
    enabled = sum(1 for server in servers.values() if server.enabled)
    checks = [Check("config", OK, f"{path}: {len(servers)} server(s), {enabled} enabled")]
    if checks_mode_bits():
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:  # pragma: no cover - it was just read
            mode = 0
        if mode & 0o077:
            checks.append(
                Check(
                    "config-mode",
                    WARNING,
                    f"{path} is readable by group or others (mode {mode:04o}); "
                    "its env tables may hold tokens",
                    f"chmod 600 {path}",
                )
            )
    return checks, servers


def _resolve(command: str, base_dir: str, search_path: str) -> str | None:
    """Where the daemon's exec would find ``command``, or ``None``."""
    if os.sep in command or (os.altsep and os.altsep in command):
        candidate = os.path.join(base_dir, os.path.expanduser(command))
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        return None
    dirs = [os.path.join(base_dir, d or ".") for d in search_path.split(os.pathsep)]
    return shutil.which(command, path=os.pathsep.join(dirs))


def check_server(
    server: ServerConfig,
    base_env: Mapping[str, str],
    home: Path,
    *,
    env_source: str = "PATH",
) -> Check:
    """Whether ``server``'s ``cwd`` exists and its ``command`` can be found.

    ``env_source`` names where ``base_env`` came from, for the message.
    """
    name = f"mcp-server:{server.name}"
    if not server.enabled:
        return Check(name, OK, f"server {server.name!r} is disabled (not started, not checked)")
    if server.remote:
        return check_remote(server, base_env, home, env_source=env_source)
    edit = f"bicameral mcp add {server.name} --replace --cwd DIR -- COMMAND [ARGS...]"
    base_dir = server.cwd or str(home)
    if server.cwd is not None and not os.path.isdir(server.cwd):
        return Check(
            name,
            PROBLEM,
            f"server {server.name!r}: its cwd {server.cwd} is not a directory",
            f"create it, or change `cwd` in config.toml (`{edit}`)",
        )
    env = {**base_env, **server.env_dict()}
    search_path = env.get("PATH", os.defpath)
    found = _resolve(server.command, base_dir, search_path)
    if found is not None:
        return Check(name, OK, f"server {server.name!r}: {server.command} is {found}")
    where = "the PATH of its env table" if "PATH" in server.env_dict() else env_source
    if os.sep in server.command:
        message = f"server {server.name!r}: {server.command} is not an executable file"
    else:
        message = (
            f"server {server.name!r}: command {server.command!r} is not on {where} ({search_path})"
        )
    return Check(
        name,
        PROBLEM,
        message + "; it will fail to start",
        f"install it, or give its absolute path ({edit}), or add its directory to "
        f'the server\'s env: env = {{ PATH = "/its/dir:..." }}',
    )


def check_remote(
    server: ServerConfig, base_env: Mapping[str, str], home: Path, *, env_source: str = "PATH"
) -> Check:
    """A remote (``url``) server: its ``${env:...}`` values resolve, and an OAuth login exists.

    Nothing is sent to the server (doctor stays fast and offline); `mcp ps`
    shows whether it answers.
    """
    from bicameral.mcp._config import expand_env, has_stored_tokens

    name = f"mcp-server:{server.name}"
    where = f"{server.url} ({'legacy SSE' if server.transport == 'sse' else 'streamable HTTP'})"
    environment = (
        "the running daemon's environment" if "daemon" in env_source else "the environment"
    )
    values = [("header " + k, v) for k, v in server.headers]
    if server.auth == "bearer" and server.token is not None:
        values.append(("token", server.token))
    for what, value in values:
        try:
            expand_env(value, base_env)
        except KeyError as exc:
            return Check(
                name,
                PROBLEM,
                f"server {server.name!r} ({where}): its {what} needs an "
                f"{exc.args[0]} in {environment}; every request would fail",
                "set the variable where the daemon starts, then `bicameral daemon restart`; "
                f"or change the value (`bicameral mcp add {server.name} --replace --url ...`)",
            )
    if server.auth == "oauth" and not has_stored_tokens(home, server.name):
        return Check(
            name,
            WARNING,
            f"server {server.name!r} ({where}) uses OAuth and nobody has logged in yet; "
            "it shows needs-login until then",
            f"bicameral mcp login {server.name}",
        )
    auth = {"none": "", "bearer": ", bearer token", "oauth": ", OAuth (logged in)"}
    return Check(name, OK, f"server {server.name!r}: remote, {where}{auth.get(server.auth, '')}")


def mcp_checks(paths: DaemonPaths, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every MCP-level check, in the order they are shown.

    ``environ`` is the base environment of the servers; by default the running
    daemon's, else this process's.
    """
    servers: dict[str, ServerConfig] | None = None

    def config() -> list[Check]:
        nonlocal servers
        checks, servers = check_config(paths)
        return checks

    results = run_checks([("config", config)])
    if not servers:
        return results
    base = environ
    source = "PATH"
    if base is None:
        running = daemon_environ(paths)
        if running is not None:
            base, source = running, "the running daemon's PATH"
        else:
            base = os.environ
    elif base is not os.environ:
        source = "the given PATH"
    import functools

    def one(server: ServerConfig) -> list[Check]:
        return [check_server(server, base, paths.home, env_source=source)]

    results.extend(
        run_checks((f"mcp-server:{s.name}", functools.partial(one, s)) for s in servers.values())
    )
    return results
