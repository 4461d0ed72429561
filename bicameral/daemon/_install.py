"""``bicameral daemon install``: write the per-user service file, print how to enable it.

What is written where is `bicameral.platform`'s (a systemd user unit, a
launchd LaunchAgent, a Task Scheduler logon task); this module writes it
atomically, refuses to replace one made for another state dir, and removes
it. It does not enable the service: that is the user's call, and the
command prints how.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bicameral.daemon._errors import DaemonError
from bicameral.daemon._files import write_atomic
from bicameral.daemon._options import serve_args
from bicameral.platform import (
    CURRENT,
    Platform,
    ServiceFile,
    service_file,
    service_logs_to_file,
    service_python,
)

if TYPE_CHECKING:
    from bicameral.daemon._paths import DaemonPaths

__all__ = [
    "install_service",
    "serve_argv",
    "service_argv",
    "service_for",
    "uninstall_service",
]


def serve_argv(
    paths: DaemonPaths, python: str | None = None, platform: Platform = CURRENT
) -> list[str]:
    """The foreground daemon a service manager runs: this interpreter, this state dir."""
    return service_argv(python or sys.executable, paths.home, platform)


def service_argv(
    python: str, home: str | os.PathLike[str], platform: Platform = CURRENT
) -> list[str]:
    """The daemon a service manager runs: ``python -m bicameral.daemon serve --home HOME``.

    On Windows ``pythonw.exe`` beside ``python`` and ``--detached``, so the
    daemon logs to its file (`bicameral.platform.service_logs_to_file`).
    """
    values = {"detached": service_logs_to_file(platform), "home": str(home)}
    return [service_python(python, platform), "-m", "bicameral.daemon", *serve_args(values)]


def service_for(
    paths: DaemonPaths, *, platform: Platform = CURRENT, user_home: Path | None = None
) -> ServiceFile:
    """The service file that runs the daemon of ``paths`` on ``platform``."""
    return service_file(
        serve_argv(paths, platform=platform),
        platform=platform,
        log_path=paths.log,
        user_home=user_home,
    )


def install_service(
    paths: DaemonPaths, *, platform: Platform = CURRENT, user_home: Path | None = None
) -> tuple[Path, str]:
    """Write the service file for ``paths``; return where, and the command that enables it.

    Written atomically (temporary file, fsync, rename) so a service manager
    never reads half a unit; an existing file is replaced. Raises
    :class:`DaemonError` when the file cannot be written.
    """
    service = service_for(paths, platform=platform, user_home=user_home)
    target = Path(service.path)
    _refuse_another_home(target, paths, service.encoding)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # 0644, as service managers and their tools expect of unit files.
        write_atomic(target, service.data(), mode=0o644)
    except OSError as exc:
        raise DaemonError(f"cannot write {target}: {exc.strerror}") from None
    return target, service.enable


def _refuse_another_home(target: Path, paths: DaemonPaths, encoding: str) -> None:
    """An installed unit for another state dir is not silently replaced."""
    try:
        existing = target.read_text(encoding=encoding, errors="replace")
    except OSError:
        return
    if "--home" not in existing or str(paths.home) in existing:
        return
    raise DaemonError(
        f"{target} already runs a daemon for another state dir; run "
        "`bicameral daemon uninstall` first (one user unit per user)"
    )


def uninstall_service(
    *, platform: Platform = CURRENT, user_home: Path | None = None
) -> Path | None:
    """Remove the service file; its path, or ``None`` when there was none."""
    from bicameral.platform import service_path

    target = Path(service_path(platform, user_home))
    try:
        target.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DaemonError(f"cannot remove {target}: {exc.strerror}") from None
    return target
