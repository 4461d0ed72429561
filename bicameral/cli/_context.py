"""What the root command's options leave for its subcommands.

``bicameral --home DIR <command>``: the root callback stores ``--home`` in
the root context's ``obj``; every subcommand reads it back through
:func:`root_home`, which also refuses a state directory that cannot even be
named: ``--home ""`` or ``BICAMERAL_HOME=`` (SPEC §4: an error, never the
current directory), as one line on stderr and exit 2.
"""

from __future__ import annotations

from typing import Any

__all__ = ["complete_server", "root_home"]


def root_home(ctx: Any, *, check: bool = True) -> str | None:
    """The state directory given to the root command, or ``None`` for the default.

    With `check` (the default) an empty ``--home`` or ``$BICAMERAL_HOME``
    ends the command (exit 2, one line); ``daemon status`` passes
    ``check=False`` and reports it itself, with its own exit code (4).
    """
    obj = ctx.find_root().obj
    home = obj.get("home") if isinstance(obj, dict) else None
    if check:
        from bicameral.cli._errors import failing
        from bicameral.daemon import resolve_paths

        with failing(None, code=2):
            resolve_paths(home)
    return None if home is None else str(home)


def complete_server(ctx: Any, incomplete: str) -> list[str]:
    """Shell completion: the names of config.toml's servers that start with `incomplete`.

    Cheap on purpose (a shell waits for it): the file is read and parsed
    with the standard library only, nothing is validated, no daemon is
    asked, and any problem offers nothing rather than an error.
    """
    try:
        import tomllib

        from bicameral.daemon import read_regular, resolve_paths

        root = ctx.find_root()
        # While completing, Click parses without running callbacks: the root's
        # --home is in its params, not yet in its obj.
        home = root.params.get("home") or None
        path = resolve_paths(home).config
        data = tomllib.loads(read_regular(path, limit=1 << 20).decode())
        servers = data.get("mcp", {}).get("servers", {})
        names = [str(name) for name in servers] if isinstance(servers, dict) else []
    except Exception:  # a completion never fails: it offers nothing
        return []
    return sorted(name for name in names if name.startswith(incomplete))
