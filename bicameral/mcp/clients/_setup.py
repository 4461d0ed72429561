"""``bicameral client setup`` and ``client undo``: put a client on bicameral, and take it back.

Setup, for one client's config file:

1. reads it (a file that does not parse is an error naming the line, and
   is left untouched);
2. imports the servers its entries describe into ``config.toml`` through
   :func:`bicameral.mcp.import_entries`, the code behind ``mcp import``
   (entries that already go through bicameral are left alone);
3. rewrites each imported entry's launch keys so that it runs ``bicameral
   mcp --server NAME`` (or, with ``http=True``, reaches the listener's
   ``/mcp/NAME`` with its bearer header), keeping every other key of the
   entry and every other byte of the file;
4. keeps a backup and a record of the bytes it wrote (:mod:`._records`).

It is idempotent: a second run finds every entry already going through
bicameral and writes nothing. A server whose name bicameral already uses
for a different server is a clash, answered by ``on_clash``: ``fail`` (the
default: nothing is written, the clashes are listed), ``keep`` (the
client's entry goes to bicameral's server of that name), ``replace``
(bicameral's server becomes the client's), or ``rename`` (imported as
``NAME-CLIENT``).

A file that changed since bicameral last wrote it is never overwritten
without ``force``, by setup or by undo. Undo restores the newest backup
byte for byte; the imported servers stay in ``config.toml`` (another
client may use them).
"""

from __future__ import annotations

import difflib
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError, write_atomic
from bicameral.mcp.clients._dialect import (
    bridge_entry,
    http_entry,
    import_entry,
    launch_keys,
    through_bicameral,
)
from bicameral.mcp.clients._inventory import Machine, read_client
from bicameral.mcp.clients._records import Records, digest

if TYPE_CHECKING:
    from bicameral.daemon import DaemonPaths
    from bicameral.mcp._config_import import ImportResult

__all__ = ["ON_CLASH", "bicameral_executable", "bridge_argv", "setup_client", "undo_client"]

#: The answers to a name clash.
ON_CLASH = ("fail", "keep", "replace", "rename")
#: How many ``NAME-CLIENT-N`` names ``rename`` tries.
_RENAME_TRIES = 20


def bicameral_executable() -> str:
    """The absolute path of the ``bicameral`` being run (clients start with a bare PATH)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name.lower().startswith("bicameral") and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    beside = Path(sys.executable).with_name("bicameral")
    if beside.is_file():
        return str(beside)
    return shutil.which("bicameral") or "bicameral"


def bridge_argv(paths: DaemonPaths, server: str, executable: str) -> list[str]:
    """``bicameral [--home H] mcp --server SERVER``; ``--home`` when it is not the default."""
    from bicameral.daemon import resolve_paths

    argv = [executable]
    if paths.home != resolve_paths(None, environ={}).home:
        argv += ["--home", str(paths.home)]
    return [*argv, "mcp", "--server", server]


def _diff(before: str | None, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        (before or "").splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{name} (now)" if before is not None else "/dev/null",
        tofile=f"{name} (after setup)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _import(
    paths: DaemonPaths,
    entries: dict[str, Any],
    source: Path,
    client: str,
    on_clash: str,
    *,
    dry_run: bool,
) -> tuple[ImportResult, dict[str, str], dict[str, Any]]:
    """Import ``entries``, answering clashes with ``on_clash``.

    Returns the import's result, the client entries routed to bicameral
    servers that were not imported (``keep``), and the options that make
    the real import equal to the checked one.
    """
    from bicameral.mcp import import_entries

    options: dict[str, Any] = {"base": source.parent, "replace": set(), "names": {}}
    result = import_entries(paths.config, entries, source, dry_run=True, **options)
    kept: dict[str, str] = {}
    by_name = {name: s for s, name in _sources(result, entries).items()}
    if result.clashes and on_clash == "fail":
        names = ", ".join(result.clashes)
        raise ConfigError(
            f"bicameral already has a different server named {names}; choose with "
            "--on-clash keep (use bicameral's), replace (use this client's), "
            f"or rename (import as NAME-{client})"
        )
    if result.clashes and on_clash == "keep":
        kept = {by_name[name]: name for name in result.clashes}
    elif result.clashes and on_clash == "replace":
        options["replace"] = set(result.clashes)
        result = import_entries(paths.config, entries, source, dry_run=True, **options)
    elif result.clashes:
        first = {by_name[c]: c for c in result.clashes}
        attempt: dict[str, int] = {}
        for _ in range(_RENAME_TRIES):
            for clash in result.clashes:
                source_name = by_name[clash]
                n = attempt[source_name] = attempt.get(source_name, 0) + 1
                stem = f"{first.get(source_name, clash)}-{client}"
                options["names"][source_name] = stem if n == 1 else f"{stem}-{n}"
            result = import_entries(paths.config, entries, source, dry_run=True, **options)
            by_name = {name: s for s, name in _sources(result, entries).items()}
            if not result.clashes:
                break
        else:
            raise ConfigError("cannot find a free name for the clashing servers; rename them")
    if not dry_run and result.after is not None:
        result = import_entries(paths.config, entries, source, **options)
    return result, kept, options


def _sources(result: ImportResult, entries: dict[str, Any]) -> dict[str, str]:
    """Source name -> the bicameral name it was (or would have been) given."""
    from bicameral.mcp._config_import import bicameral_name

    return {s: result.names.get(s) or bicameral_name(s) for s in entries}


def _http_base(paths: DaemonPaths) -> tuple[str, dict[str, str]]:
    from bicameral.mcp import http_endpoint

    endpoint = http_endpoint(paths)
    headers = {}
    if "header" in endpoint:
        key, _, value = str(endpoint["header"]).partition(": ")
        headers[key] = value
    return str(endpoint["url"]), headers


def setup_client(
    paths: DaemonPaths,
    name: str,
    *,
    dry_run: bool = False,
    http: bool = False,
    force: bool = False,
    on_clash: str = "fail",
    machine: Machine | None = None,
    executable: str | None = None,
) -> dict[str, Any]:
    """Put the client ``name`` on bicameral (see the module's docstring); a JSON-ready result.

    Raises :class:`ConfigError` with a one-line reason for every refusal.
    """
    if on_clash not in ON_CLASH:
        raise ConfigError(f"--on-clash must be one of {', '.join(ON_CLASH)}, not {on_clash!r}")
    client = (machine or Machine.current()).client(name)
    if http and not client.http:
        raise ConfigError(f"{client.label} runs only local commands; set it up without --http")
    records = Records(paths.home)
    with records.locked():
        found = read_client(client)
        if found is None:
            raise ConfigError(f"{client.label} has no config at {client.path}; nothing to set up")
        path, data, doc = found
        target = Path(os.path.realpath(path))
        from bicameral.daemon import read_http_token

        entries = doc.entries()
        token = read_http_token(paths.home)
        already = {
            n: s for n, e in entries.items() if (s := through_bicameral(client.dialect, e, token))
        }
        todo = {
            n: import_entry(client.dialect, e)
            for n, e in entries.items()
            if n not in already and isinstance(e, dict)
        }
        result, kept, _ = _import(paths, todo, path, name, on_clash, dry_run=dry_run)
        route = {**result.names, **kept}
        base = _http_base(paths) if http and route else None
        exe = executable or bicameral_executable()
        rewrites = {}
        for source, server in route.items():
            if base is not None:
                launch = http_entry(client.dialect, f"{base[0]}/{server}", base[1])
            else:
                launch = bridge_entry(
                    client.dialect, bridge_argv(paths, server, exe), entries[source]
                )
            rewrites[source] = (launch, launch_keys(client.dialect))
        text = doc.rewrite(rewrites) if rewrites else doc.text
        new = text.encode("utf-8")
        outcome: dict[str, Any] = {
            "client": client.name,
            "label": client.label,
            "path": str(path),
            "rewritten": route,
            "already": already,
            "import": result.to_dict(),
            "config_path": str(paths.config),
            "backup": None,
        }
        changed = new != data
        if dry_run:
            outcome["status"] = "dry-run"
            outcome["diff"] = (_diff(doc.text, text, str(path)) if changed else "") + (
                _diff(result.before, result.after, str(paths.config)) if result.after else ""
            )
            return outcome
        outcome["status"] = "set-up" if changed or result.after else "unchanged"
        if not changed:
            return outcome
        latest = records.latest(str(target))
        if latest is not None and digest(data) != latest.after_sha256 and not force:
            raise ConfigError(
                f"{path} changed since bicameral set it up ({latest.at}); run again with --force "
                f"to set it up anew (undo then goes back one setup at a time)"
            )
        mode = stat.S_IMODE(os.stat(target).st_mode)
        record = records.push(client.name, str(target), data, new, mode=mode, servers=route)
        try:
            write_atomic(target, new, mode=mode)
        except OSError as exc:
            records.drop(record)
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
        outcome["backup"] = str(records.backup_path(record))
        return outcome


def undo_client(
    paths: DaemonPaths, name: str, *, force: bool = False, machine: Machine | None = None
) -> dict[str, Any]:
    """Restore ``name``'s config as it was before its newest setup, byte for byte."""
    client = (machine or Machine.current()).client(name)
    records = Records(paths.home)
    with records.locked():
        path = Path(client.path)
        target = os.path.realpath(path)
        record = records.latest(target)
        if record is None:
            raise ConfigError(f"nothing to undo: no `client setup {name}` of {path} is recorded")
        try:
            current: bytes | None = Path(target).read_bytes()
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if digest(current) != record.after_sha256 and not force:
            raise ConfigError(
                f"{path} changed since `client setup {name}` ({record.at}); restoring the backup "
                "would lose those changes: run `bicameral client undo "
                f"{name} --force` to restore it anyway"
            )
        data = records.read_backup(record)
        try:
            write_atomic(Path(target), data, mode=record.mode)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
        records.drop(record)
    return {
        "status": "restored",
        "client": client.name,
        "path": str(path),
        "servers": sorted(set(record.servers.values())),
        "config_path": str(paths.config),
    }
