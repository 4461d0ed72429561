"""Service files for running ``bicameral daemon serve`` under systemd or launchd.

``bicameral daemon install`` writes a per-user unit (it does not enable it:
that is the user's call, and the command prints how). The unit runs the
daemon in the foreground, where it logs to stderr (the journal) and speaks
``sd_notify``, so systemd knows when it is ready, reloading or stopping, and
SIGHUP reloads it.

Pure functions of their arguments, so both platforms' files are tested
anywhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from bicameral.daemon._errors import DaemonError
from bicameral.daemon._files import write_atomic

if TYPE_CHECKING:
    from bicameral.daemon._paths import DaemonPaths

__all__ = [
    "install_service",
    "serve_argv",
    "service_file",
    "service_path",
    "uninstall_service",
]

LAUNCHD_LABEL = "dev.bicameral.daemon"


def service_path(platform: str = sys.platform, user_home: Path | None = None) -> Path:
    """Where the per-user service file goes on ``platform``."""
    base = user_home if user_home is not None else Path.home()
    if platform == "darwin":
        return base / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    if platform.startswith("linux"):
        return base / ".config" / "systemd" / "user" / "bicameral.service"
    raise NotImplementedError(f"no service manager integration for {platform}")


def _quote_systemd(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-:=@+," for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def service_file(
    argv: list[str],
    *,
    platform: str = sys.platform,
    log_path: Path | None = None,
    path: str | None = None,
) -> str:
    """The unit (systemd) or plist (launchd) running ``argv`` in the foreground.

    `path` (default: this shell's ``$PATH``) is written into it: a service
    manager starts the daemon with a minimal ``PATH`` of its own, where the
    ``npx`` or ``uvx`` of MCP server commands is usually not found.
    """
    search = path if path is not None else os.environ.get("PATH", "/usr/bin:/bin")
    if platform == "darwin":
        args = "\n".join(f"    <string>{escape(a)}</string>" for a in argv)
        log = escape(str(log_path)) if log_path else "/dev/null"
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
{args}
  </array>
  <key>EnvironmentVariables</key>
  <dict><key>PATH</key><string>{escape(search)}</string></dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict><key>SuccessfulExit</key><false/></dict>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"""
    command = " ".join(_quote_systemd(a) for a in argv)
    return f"""[Unit]
Description=bicameral: supervised MCP servers for this user

[Service]
Type=notify
NotifyAccess=main
Environment={_quote_systemd("PATH=" + search)}
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=1
TimeoutStopSec=15
WatchdogSec=30

[Install]
WantedBy=default.target
"""


def serve_argv(paths: DaemonPaths, python: str | None = None) -> list[str]:
    """The foreground daemon a service manager runs: this interpreter, this state dir."""
    return [python or sys.executable, "-m", "bicameral.daemon", "serve", "--home", str(paths.home)]


def install_service(
    paths: DaemonPaths, *, platform: str = sys.platform, user_home: Path | None = None
) -> tuple[Path, str]:
    """Write the service file for ``paths``; return where, and the command that starts it.

    Written atomically (temporary file, fsync, rename) so a service manager
    never reads half a unit; an existing file is replaced. Raises
    :class:`DaemonError` when the platform has no supported service manager
    or the file cannot be written.
    """
    try:
        target = service_path(platform, user_home)
    except NotImplementedError as exc:
        raise DaemonError(str(exc)) from None
    text = service_file(serve_argv(paths), platform=platform, log_path=paths.log)
    _refuse_another_home(target, paths)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # 0644, as service managers and their tools expect of unit files.
        write_atomic(target, text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise DaemonError(f"cannot write {target}: {exc.strerror}") from None
    if platform == "darwin":
        hint = f"launchctl load -w {target}"
    else:
        hint = "systemctl --user daemon-reload && systemctl --user enable --now bicameral"
    return target, hint


def _refuse_another_home(target: Path, paths: DaemonPaths) -> None:
    """An installed unit for another state dir is not silently replaced."""
    try:
        existing = target.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if "--home" not in existing or str(paths.home) in existing:
        return
    raise DaemonError(
        f"{target} already runs a daemon for another state dir; run "
        "`bicameral daemon uninstall` first (one user unit per user)"
    )


def uninstall_service(
    *, platform: str = sys.platform, user_home: Path | None = None
) -> Path | None:
    """Remove the service file; its path, or ``None`` when there was none."""
    try:
        target = service_path(platform, user_home)
    except NotImplementedError as exc:
        raise DaemonError(str(exc)) from None
    try:
        target.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DaemonError(f"cannot remove {target}: {exc.strerror}") from None
    return target
