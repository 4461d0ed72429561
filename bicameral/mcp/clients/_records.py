"""What ``client setup`` wrote, so ``client undo`` can put the bytes back.

Kept in the state directory, owner-only: ``clients/records.json`` (mode
0600) lists one :class:`Record` per setup that changed a file, oldest
first, and ``clients/backups/`` holds the file's bytes from just before each
one. A record also keeps the SHA-256 of what setup wrote, so undo can tell
whether the file changed since (then it is refused without ``--force``).
Undo takes the newest record of a file: several setups of one file (a
server added to the client in between) are undone one at a time.

Every write is atomic (`write_atomic`), and one setup or undo at a time
holds a lock on ``clients/.lock`` (the daemon's `flock`), so two concurrent
commands never lose a record or a backup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bicameral.daemon import ConfigError, DaemonError, check_private_dir, write_atomic

__all__ = ["Record", "Records", "digest"]


def digest(data: bytes | None) -> str | None:
    """The SHA-256 of ``data`` in hex (``None`` for a file that does not exist)."""
    return None if data is None else hashlib.sha256(data).hexdigest()


@dataclass
class Record:
    """One setup of one client file."""

    client: str
    path: str
    backup: str
    before_sha256: str
    after_sha256: str
    mode: int
    at: str
    servers: dict[str, str] = field(default_factory=dict)


class Records:
    """The records and backups under ``<home>/clients``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / "clients"
        self.file = self.dir / "records.json"
        self.backups = self.dir / "backups"

    def _ensure(self) -> None:
        try:
            check_private_dir(self.home)
            for directory in (self.dir, self.backups):
                check_private_dir(directory, what="directory")
        except DaemonError as exc:
            raise ConfigError(str(exc)) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the records' lock (creating the directories, 0700, as needed)."""
        from bicameral.daemon import flock

        self._ensure()
        path = self.dir / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
        try:
            flock(fd, wait=True)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def load(self) -> list[Record]:
        """Every record, oldest first (none when there is no file yet)."""
        try:
            data = json.loads(self.file.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.file}: unreadable ({exc}); move it away to start over"
            ) from None
        try:
            return [Record(**item) for item in data["records"]]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{self.file}: not a records file ({exc})") from None

    def _save(self, records: list[Record]) -> None:
        body = {"version": 1, "records": [dataclasses.asdict(r) for r in records]}
        data = json.dumps(body, indent=2).encode() + b"\n"
        try:
            write_atomic(self.file, data)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.file}: {exc.strerror or exc}") from None

    def latest(self, path: str) -> Record | None:
        """The newest record of the file ``path``."""
        found = [r for r in self.load() if r.path == path]
        return found[-1] if found else None

    def push(
        self,
        client: str,
        path: str,
        before: bytes,
        after: bytes,
        *,
        mode: int,
        servers: dict[str, str],
    ) -> Record:
        """Keep ``before`` as a backup and record a setup that wrote ``after``."""
        now = datetime.datetime.now(datetime.UTC)
        name = f"{client}-{now:%Y%m%dT%H%M%S}-{os.urandom(3).hex()}{Path(path).suffix}"
        try:
            write_atomic(self.backups / name, before)
        except OSError as exc:
            raise ConfigError(
                f"cannot write a backup in {self.backups}: {exc.strerror or exc}"
            ) from None
        record = Record(
            client=client,
            path=path,
            backup=name,
            before_sha256=digest(before) or "",
            after_sha256=digest(after) or "",
            mode=mode,
            at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            servers=servers,
        )
        self._save([*self.load(), record])
        return record

    def backup_path(self, record: Record) -> Path:
        """Where ``record``'s backup is."""
        return self.backups / record.backup

    def read_backup(self, record: Record) -> bytes:
        """``record``'s backup, checked against the digest taken when it was made."""
        try:
            data = self.backup_path(record).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"the backup {self.backup_path(record)} is gone ({exc.strerror}); cannot undo"
            ) from None
        if digest(data) != record.before_sha256:
            raise ConfigError(f"the backup {self.backup_path(record)} was changed; cannot undo")
        return data

    def drop(self, record: Record) -> None:
        """Forget ``record`` and delete its backup (after a successful undo)."""
        self._save([r for r in self.load() if r != record])
        with contextlib.suppress(FileNotFoundError):
            self.backup_path(record).unlink()

    def summary(self) -> list[dict[str, Any]]:
        """Every record as JSON-ready dicts (``client list`` shows them)."""
        return [dataclasses.asdict(r) for r in self.load()]
