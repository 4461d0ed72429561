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

import sys
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = ["service_file", "service_path"]

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
    argv: list[str], *, platform: str = sys.platform, log_path: Path | None = None
) -> str:
    """The unit (systemd) or plist (launchd) running ``argv`` in the foreground."""
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
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=1
TimeoutStopSec=15
WatchdogSec=30

[Install]
WantedBy=default.target
"""
