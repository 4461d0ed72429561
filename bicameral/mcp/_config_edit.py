"""Editing ``[mcp.servers.*]`` in ``config.toml``: add, remove, list, import.

What ``bicameral mcp add | remove | list | import`` run. Edits go through
tomlkit, so the user's comments, key order and layout survive; only the
server being added, replaced or removed changes. Every edit is:

- checked before anything is written: the edited text is parsed again with
  :mod:`tomllib` and must mean exactly the old configuration plus the change
  (so a tomlkit surprise can never write something else), and an added or
  imported server must validate with :func:`~bicameral.mcp._config.load_servers`
  together with the servers already there; a failed check writes nothing;
- atomic: a temporary file in the same directory, fsync, rename over the
  config (a symlinked config is followed, so the link stays), mode 0600; a
  missing file is created, and a missing directory too (mode 0700);
- serialised against other editors by an ``flock`` on the directory, so two
  concurrent ``mcp add`` never lose one of the servers.

``import_servers`` reads the ``mcpServers`` JSON object of Claude Desktop
(``claude_desktop_config.json``), Claude Code (``.mcp.json``,
``~/.claude.json``) and Cursor (``.cursor/mcp.json``), and VS Code's
``servers`` object (``.vscode/mcp.json``), which has the same entries, local
and remote (:mod:`bicameral.mcp._config_import` says what each entry means).
``import_entries`` is the same import for entries already read (``bicameral
client setup`` reads them out of each client's own format).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError, DaemonError, check_trusted_path, flock, write_atomic
from bicameral.mcp._config import (
    RULE_TABLES,
    ServerConfig,
    _server,
    check_server_name,
    load_servers,
    read_config,
    read_text,
)
from bicameral.mcp._config_import import (
    ImportResult,
    bicameral_name,
    convert_entry,
    parse_mcp_servers,
)
from bicameral.platform import can_lock_directories

if TYPE_CHECKING:
    import tomlkit.container
    import tomlkit.items

__all__ = [
    "ImportResult",
    "add_server",
    "import_entries",
    "import_servers",
    "list_servers",
    "parse_mcp_servers",
    "remove_server",
]

#: A new config file starts with this comment.
HEADER = "# bicameral configuration. `bicameral mcp add/remove/import` keep your comments.\n"

_LONG_LINE = 88


# --- reading and writing -------------------------------------------------------------


def list_servers(path: Path, *, must_exist: bool = False) -> list[ServerConfig]:
    """The servers configured in ``path``, in file order.

    A missing file means none, unless `must_exist` (a ``--config`` the user
    named): then it is a :class:`ConfigError`, not a silent empty list.
    """
    if must_exist and not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    return list(load_servers(read_config(path), path).values())


@contextlib.contextmanager
def _locked_dir(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (creating it 0700 if missing).

    A directory another user could redirect is refused first, with the
    daemon's own message (`check_trusted_path`): an edit must not land where
    the daemon would refuse to read it, or where someone else can swap it.
    """
    try:
        check_trusted_path(directory, "config directory")
    except DaemonError as exc:
        raise ConfigError(str(exc)) from None
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {directory}: {exc.strerror}") from None
    if not can_lock_directories():  # Windows: edits are rare and quick
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"cannot open directory {directory}: {exc.strerror}") from None
    try:
        flock(fd, wait=True)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _target(path: Path) -> Path:
    """The file to write: ``path`` itself, or what it links to (dotfile managers)."""
    return Path(os.path.realpath(path))


def _parse(path: Path, text: str) -> tuple[dict[str, Any], tomlkit.TOMLDocument]:
    """``text`` as plain data (tomllib, for its error messages) and as a tomlkit document."""
    import tomllib

    import tomlkit

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        doc = tomlkit.parse(text)
    except Exception as exc:  # pragma: no cover - tomllib accepted it
        raise ConfigError(f"{path}: cannot edit this TOML: {exc}") from None
    return data, doc


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600 (see `write_atomic`)."""
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- the document ------------------------------------------------------------------


def _plain(config: ServerConfig) -> dict[str, Any]:
    """The table written for ``config``: only the keys that differ from the defaults."""
    if config.remote:
        remote: dict[str, Any] = {"url": config.url}
        if config.transport != "http":
            remote["transport"] = config.transport
        if config.headers:
            remote["headers"] = dict(config.headers)
        if config.auth != "none":
            remote["auth"] = config.auth
        if config.token is not None:
            remote["token"] = config.token
        for key in ("scope", "client_id", "client_metadata_url"):
            if getattr(config, key) is not None:
                remote[key] = getattr(config, key)
        if not config.enabled:
            remote["enabled"] = False
        if config.share != "auto":
            remote["share"] = config.share
        return remote
    table: dict[str, Any] = {"command": config.command}
    if config.args:
        table["args"] = list(config.args)
    if config.env:
        table["env"] = dict(config.env)
    if config.cwd is not None:
        table["cwd"] = config.cwd
    if not config.enabled:
        table["enabled"] = False
    if config.share != "auto":
        table["share"] = config.share
    return table


def _item(key: str, value: Any) -> Any:
    """A tomlkit value for ``key``, laid out for people: long arrays one item per line."""
    import tomlkit

    if key == "args":
        array = tomlkit.array()
        array.extend(value)
        if len(tomlkit.dumps({key: array})) > _LONG_LINE:
            array.multiline(True)
        return array
    if key == "env":
        inline = tomlkit.inline_table()
        inline.update(value)
        return inline
    return tomlkit.item(value)


def _servers_table(path: Path, doc: tomlkit.TOMLDocument, *, create: bool) -> Any:
    """``doc``'s ``[mcp.servers]`` container (created as implicit tables when asked)."""
    import tomlkit
    from tomlkit.items import InlineTable, Table

    mcp = doc.get("mcp")
    if mcp is None:
        if not create:
            return None
        mcp = tomlkit.table(is_super_table=True)
        doc["mcp"] = mcp
    if isinstance(mcp, InlineTable) or not isinstance(mcp, Table | dict):
        raise ConfigError(
            f'{path}: "mcp" must be a [mcp] table for bicameral to edit it; edit the file by hand'
        )
    servers = mcp.get("servers")
    if servers is None:
        if not create:
            return None
        servers = tomlkit.table(is_super_table=True)
        mcp["servers"] = servers
    if isinstance(servers, InlineTable) or not isinstance(servers, Table | dict):
        raise ConfigError(
            f'{path}: "mcp.servers" must be written as [mcp.servers.NAME] tables for bicameral '
            "to edit it; edit the file by hand"
        )
    return servers


def _set_server(servers: Any, config: ServerConfig) -> None:
    """Put ``config`` in ``servers``: a new table, or the old one updated in place.

    Updating in place keeps the comments and the layout of the keys whose
    value did not change.
    """
    import tomlkit

    wanted = _plain(config)
    old = servers.get(config.name)
    if old is None or not hasattr(old, "items"):
        table = tomlkit.table()
        for key, value in wanted.items():
            table[key] = _item(key, value)
        servers[config.name] = table
        return
    for key in [k for k in old if k not in wanted and k not in RULE_TABLES]:
        del old[key]  # (its rules stay: they are not how it is launched)
    _update(old, wanted)


def _update(table: Any, wanted: dict[str, Any], *, nested: bool = False) -> None:
    """Make ``table`` hold ``wanted``, touching only the keys whose value changed.

    ``env`` written as a ``[mcp.servers.NAME.env]`` sub-table is updated the
    same way, so it stays a sub-table and keeps its comments.
    """
    for key, value in wanted.items():
        current = table.get(key)
        plain = current.unwrap() if hasattr(current, "unwrap") else current
        if plain == value:
            continue
        if isinstance(value, dict) and isinstance(plain, dict) and hasattr(current, "items"):
            for gone in [k for k in current if k not in value]:
                del current[gone]
            _update(current, value, nested=True)
        elif nested:
            import tomlkit

            table[key] = tomlkit.item(value)
        else:
            table[key] = _item(key, value)


def _space_new_table(text: str, name: str) -> str:
    """One blank line before the new ``[mcp.servers.NAME]`` and after its block.

    tomlkit appends a table with no blank line around it; the rest of the
    file is left exactly as the user wrote it.
    """
    lines = text.splitlines(keepends=True)
    header = f"[mcp.servers.{name}]"
    found = [i for i, line in enumerate(lines) if line.strip() == header]
    if len(found) != 1:
        return text
    i = found[0]
    end = next(
        (j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("[")),
        None,
    )
    if end is not None and lines[end - 1].strip():
        lines.insert(end, "\n")
    if i > 0 and lines[i - 1].strip():
        if not lines[i - 1].endswith("\n"):
            lines[i - 1] += "\n"
        lines.insert(i, "\n")
    return "".join(lines)


def _expected(data: dict[str, Any], changes: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """``data`` with ``changes`` applied to ``mcp.servers`` (``None`` removes a server)."""
    result = dict(data)
    mcp = dict(result.get("mcp") or {})
    servers = dict(mcp.get("servers") or {})
    for name, table in changes.items():
        if table is None:
            servers.pop(name, None)
        else:
            old = servers.get(name)
            kept = {k: v for k, v in old.items() if k in RULE_TABLES} if old else {}
            servers[name] = {**kept, **table}
    mcp["servers"] = servers
    result["mcp"] = mcp
    return result


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Implicit empty ``[mcp]`` / ``[mcp.servers]`` tables do not count in the comparison."""
    mcp = data.get("mcp")
    if isinstance(mcp, dict):
        servers = mcp.get("servers")
        if isinstance(servers, dict) and not servers:
            mcp = {k: v for k, v in mcp.items() if k != "servers"}
        data = {**data, "mcp": mcp}
        if not mcp:
            data = {k: v for k, v in data.items() if k != "mcp"}
    return data


def _apply(
    path: Path, changes: dict[str, ServerConfig | None], *, validate: bool, write: bool = True
) -> tuple[str | None, str]:
    """Apply ``changes`` (name -> new config, or ``None`` to remove) to ``path``, atomically.

    Returns the text before (``None``: no file) and after; ``write=False``
    checks the edit and writes nothing. The caller holds the directory lock
    and has read ``path`` under it.
    """
    old = read_text(path)
    text = HEADER if old is None else old
    data, doc = _parse(path, text)
    servers = _servers_table(path, doc, create=any(c is not None for c in changes.values()))
    added = []
    for name, config in changes.items():
        if config is None:
            del servers[name]
        else:
            if name not in servers:
                added.append(name)
            _set_server(servers, config)
    new_text = doc.as_string()
    for name in added:
        new_text = _space_new_table(new_text, name)
    if not new_text.endswith("\n"):
        new_text += "\n"
    if new_text.endswith("\n\n") and not text.endswith("\n\n"):
        new_text = new_text.rstrip("\n") + "\n"  # a removal leaves no blank tail
    plain = {name: (None if c is None else _plain(c)) for name, c in changes.items()}
    import tomllib

    try:
        got = _normalise(tomllib.loads(new_text))
    except tomllib.TOMLDecodeError:
        got = None
    if got != _normalise(_expected(data, plain)):
        raise ConfigError(
            f"{path}: cannot edit this file's layout automatically (nothing was written); "
            "edit [mcp.servers] by hand"
        )
    if validate:
        load_servers(tomllib.loads(new_text), path)
    if write:
        _write_atomic(path, new_text)
    return old, new_text


def _checked(config: ServerConfig, path: Path) -> ServerConfig:
    """``config`` validated as if read from the file (raises :class:`ConfigError`)."""
    problem = check_server_name(config.name)
    if problem is not None:
        raise ConfigError(problem)
    _server(str(path), config.name, _plain(config))
    return config


def add_server(path: Path, config: ServerConfig, *, replace: bool = False) -> bool:
    """Add ``config`` as ``[mcp.servers.<name>]`` in ``path``; ``True`` if it replaced one.

    An existing server of that name is an error unless ``replace``; then its
    table is updated in place (comments on unchanged keys stay). The whole
    resulting configuration must validate, or nothing is written.
    """
    _checked(config, path)
    target = _target(path)
    with _locked_dir(target.parent):
        existing = load_servers(read_config(target), path) if target.exists() else {}
        if config.name in existing and not replace:
            raise ConfigError(
                f"server {config.name!r} already exists in {path}; "
                "use --replace to overwrite it, or remove it first"
            )
        _apply(target, {config.name: config}, validate=True)
    return config.name in existing


def remove_server(path: Path, name: str) -> None:
    """Remove ``[mcp.servers.<name>]`` from ``path``; an unknown name is an error.

    The other servers need not be valid (removing one never makes a file
    worse), but the file must be valid TOML.
    """
    target = _target(path)
    with _locked_dir(target.parent):
        text = read_text(target)
        if text is None:
            raise ConfigError(f"no server named {name!r}: {path} does not exist")
        _data, doc = _parse(path, text)
        servers = _servers_table(path, doc, create=False)
        if servers is None or name not in servers:
            names = ", ".join(servers) if servers else "none"
            raise ConfigError(f"no server named {name!r} in {path} (configured: {names})")
        _apply(target, {name: None}, validate=False)


def import_servers(path: Path, source: Path, *, replace: bool = False) -> ImportResult:
    """Add every server of ``source``'s ``mcpServers`` to ``path``, in one atomic write.

    Malformed entries are skipped with the reason; so are names already
    configured differently, unless ``replace`` (one configured exactly so is
    ``unchanged``). A name that is not a valid server name is renamed
    (``my.server`` -> ``my-server``) and reported. Nothing is written when
    nothing is added, or when the resulting configuration would not validate.
    """
    entries, file_notes = parse_mcp_servers(source)
    result = import_entries(path, entries, source, replace=replace)
    result.notes[:0] = file_notes
    return result


def import_entries(
    path: Path,
    entries: Mapping[str, Any],
    source: Path,
    *,
    base: Path | None = None,
    replace: bool | Collection[str] = False,
    names: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Add client server ``entries`` (``mcpServers``-shaped) to ``path``, as `import_servers`.

    ``source`` names the file they came from in messages; a relative
    ``cwd`` is taken from ``base`` (default: ``source``'s directory).
    ``replace`` is ``True`` for every name, or the bicameral names to
    overwrite; ``names`` maps a source name to the bicameral name to give it
    (a clash resolved by renaming). A name configured differently and not
    replaced is a clash: skipped and listed in ``clashes``. ``dry_run``
    checks everything and fills ``before`` / ``after`` without writing.
    """
    result = ImportResult(source=source)
    base = source.resolve().parent if base is None else base
    target = _target(path)
    with _locked_dir(target.parent):
        existing = load_servers(read_config(target), path) if target.exists() else {}
        changes: dict[str, ServerConfig | None] = {}
        for original, entry in entries.items():
            name = (names or {}).get(original) or bicameral_name(original)
            if check_server_name(name) is not None:
                result.skipped.append((original, "cannot make a valid server name of it"))
                continue
            if name in changes or name in result.unchanged:
                result.skipped.append((original, f"{name!r} is imported already"))
                continue
            config, reason, notes = convert_entry(name, entry, source, base)
            if config is None:
                result.skipped.append((original, reason))
                continue
            result.configs[name] = config
            wanted = replace is True or (not isinstance(replace, bool) and name in replace)
            if name in existing and not wanted:
                if _server(str(path), name, _plain(config)) == existing[name]:
                    result.unchanged.append(name)
                    result.names[original] = name
                    continue
                result.clashes.append(name)
                result.skipped.append(
                    (original, f"{name!r} is already configured (use --replace to overwrite)")
                )
                continue
            if name != original:
                result.renamed[original] = name
            result.notes.extend((original, note) for note in notes)
            result.names[original] = name
            changes[name] = config
            (result.replaced if name in existing else result.added).append(name)
        if changes:
            result.before, result.after = _apply(target, changes, validate=True, write=not dry_run)
    return result
