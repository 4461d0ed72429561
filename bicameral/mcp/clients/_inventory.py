"""``bicameral client list``: the clients on this machine, and what their servers go through."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError
from bicameral.mcp.clients._catalogue import Client, find_client, known_clients
from bicameral.mcp.clients._dialect import through_bicameral
from bicameral.mcp.clients._formats import ClientDocument, load_document
from bicameral.mcp.clients._records import Records
from bicameral.platform import CURRENT

if TYPE_CHECKING:
    from bicameral.daemon import DaemonPaths

__all__ = ["Machine", "list_clients", "read_client"]


@dataclass(frozen=True)
class Machine:
    """Where to look: the platform, the user's home, the environment, the project directory."""

    platform: str
    home: str
    environ: Mapping[str, str]
    cwd: str

    @classmethod
    def current(cls) -> Machine:
        """This machine, this user, this process's environment and directory."""
        return cls(CURRENT.value, str(Path.home()), dict(os.environ), os.getcwd())

    def clients(self) -> list[Client]:
        """Every known client with its path here."""
        return known_clients(self.platform, self.home, self.environ, self.cwd)

    def client(self, name: str) -> Client:
        """The client ``name`` (a :class:`ConfigError` listing the known ones otherwise)."""
        return find_client(self.clients(), name)


def read_client(client: Client) -> tuple[Path, bytes, ClientDocument] | None:
    """``client``'s config path, bytes and parsed document; ``None`` when it has no file.

    A file that cannot be read or parsed is a :class:`ConfigError` naming
    the path (and the line).
    """
    path = Path(client.path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not {client.label}'s config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return path, data, load_document(client, path, data)


def list_clients(paths: DaemonPaths, machine: Machine | None = None) -> dict[str, Any]:
    """Every known client: its config path, whether it is here, its servers and their route.

    Each server shows ``through``: the bicameral server its entry goes
    through (``"*"`` for the aggregated view), or ``None`` when the client
    still runs it itself. A config that does not parse is reported in
    ``error``, not raised: one broken client does not hide the others. A
    project-scoped file that is a user-scoped one (run from the home
    directory) is listed once, under the user scope.
    """
    from bicameral.daemon import read_http_token

    machine = machine or Machine.current()
    records = Records(paths.home)
    token = read_http_token(paths.home)
    try:
        setups = [r["path"] for r in records.summary()]
    except ConfigError:
        setups = []
    rows = []
    seen = set()
    for client in machine.clients():
        if client.path in seen:  # a project scope run from the home directory
            continue
        seen.add(client.path)
        row: dict[str, Any] = {
            "name": client.name,
            "label": client.label,
            "scope": client.scope,
            "path": str(client.path),
            "found": False,
            "error": None,
            "servers": [],
            "setups": 0,
        }
        try:
            found = read_client(client)
        except ConfigError as exc:
            row.update(found=True, error=str(exc))
            rows.append(row)
            continue
        if found is not None:
            path, _data, doc = found
            row["found"] = True
            row["setups"] = setups.count(os.path.realpath(path))
            row["servers"] = [
                {"name": name, "through": through_bicameral(client.dialect, entry, token)}
                for name, entry in doc.entries().items()
            ]
        rows.append(row)
    return {"clients": rows}
