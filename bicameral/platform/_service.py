"""Per-user service files: a systemd user unit, a launchd LaunchAgent, a logon task.

``bicameral daemon install`` writes the file and prints how to enable it (the
choice to run at login is the user's): the daemon layer does the writing,
this module decides what is written where, as pure functions of the
platform, so all three are tested on any machine.

- Linux: ``~/.config/systemd/user/bicameral.service``, ``Type=notify`` (the
  daemon speaks ``sd_notify``), SIGHUP reloads, the watchdog is armed.
- macOS: ``~/Library/LaunchAgents/dev.bicameral.daemon.plist`` with keys of
  launchd.plist(5) only: ``Label``, ``ProgramArguments``,
  ``EnvironmentVariables``, ``RunAtLoad``, ``KeepAlive`` as a dictionary
  (``SuccessfulExit`` false: restarted after a crash, not after a requested
  stop), ``ExitTimeOut`` (SIGTERM to SIGKILL, as systemd's
  ``TimeoutStopSec``), ``ProcessType`` ``Interactive`` (no background
  throttling of a daemon that answers clients), ``StandardErrorPath``.
- Windows: a Task Scheduler task (schema 1.2) started at this user's logon,
  in this user's session without elevation, restarted after a failure, no
  time limit; its XML is written as UTF-16 (what ``schtasks /XML`` reads)
  and registered with ``schtasks /Create /XML``. It runs ``pythonw`` (no
  console window) with ``serve --detached`` (the log goes to the file).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from xml.sax.saxutils import escape

from bicameral.platform._home import default_home
from bicameral.platform._os import CURRENT, Platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "LAUNCHD_LABEL",
    "TASK_NAME",
    "ServiceFile",
    "service_file",
    "service_logs_to_file",
    "service_path",
    "service_python",
]

LAUNCHD_LABEL = "dev.bicameral.daemon"
TASK_NAME = "bicameral"
SYSTEMD_UNIT = "bicameral.service"
#: Seconds from the stop request to SIGKILL, for every service manager.
STOP_TIMEOUT = 15


class ServiceFile:
    """What ``install`` writes: where, the text and its encoding, and the commands to print."""

    __slots__ = ("disable", "enable", "encoding", "path", "text")

    def __init__(self, path: PurePath, text: str, encoding: str, enable: str, disable: str):
        self.path = path
        self.text = text
        self.encoding = encoding
        #: The command that registers and starts it (printed, not run).
        self.enable = enable
        #: The command that stops and unregisters it, before the file is removed.
        self.disable = disable

    def data(self) -> bytes:
        return self.text.encode(self.encoding)


def service_path(
    platform: Platform = CURRENT,
    user_home: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> PurePath:
    """Where the per-user service file goes on ``platform``."""
    home = os.fspath(user_home) if user_home is not None else os.path.expanduser("~")
    if platform.windows:
        return default_home(platform, environ=environ, user_home=home) / "bicameral-task.xml"
    base = PurePosixPath(home)
    if platform.macos:
        return base / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    return base / ".config" / "systemd" / "user" / SYSTEMD_UNIT


def service_python(python: str, platform: Platform = CURRENT) -> str:
    """The interpreter a service runs: on Windows ``pythonw.exe`` beside ``python``.

    (No console window at logon.)
    """
    if platform.windows:
        exe = PureWindowsPath(python)
        if exe.name.lower() == "python.exe":
            return str(exe.with_name("pythonw.exe"))
    return python


def service_logs_to_file(platform: Platform = CURRENT) -> bool:
    """Whether the service's daemon writes its own log file (Windows: no stderr anyone reads)."""
    return platform.windows


def service_file(
    argv: Sequence[str],
    *,
    platform: Platform = CURRENT,
    log_path: str | os.PathLike[str] | None = None,
    path: str | None = None,
    user_home: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceFile:
    """The service file running ``argv`` for ``platform``.

    ``path`` (default: this shell's ``PATH``) is written into the unit and the
    plist: a service manager starts the daemon with a minimal ``PATH`` of its
    own, where the ``npx`` or ``uvx`` of MCP server commands is usually not
    found. A logon task inherits the user's environment, ``PATH`` included.
    """
    env = os.environ if environ is None else environ
    search = path if path is not None else env.get("PATH", "/usr/bin:/bin")
    where = service_path(platform, user_home, environ=env)
    if platform.windows:
        user = _windows_user(env)
        text = _task_xml(list(argv), user)
        enable = (
            f'schtasks /Create /TN {TASK_NAME} /XML "{where}" /F && schtasks /Run /TN {TASK_NAME}'
        )
        disable = f"schtasks /End /TN {TASK_NAME} & schtasks /Delete /TN {TASK_NAME} /F"
        return ServiceFile(where, text, "utf-16", enable, disable)
    if platform.macos:
        text = _plist(list(argv), search, log_path)
        enable = f"launchctl bootstrap gui/$(id -u) {where}"
        disable = f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}"
        return ServiceFile(where, text, "utf-8", enable, disable)
    text = _systemd_unit(list(argv), search)
    enable = "systemctl --user daemon-reload && systemctl --user enable --now bicameral"
    disable = "systemctl --user disable --now bicameral"
    return ServiceFile(where, text, "utf-8", enable, disable)


def _windows_user(environ: Mapping[str, str]) -> str:
    user = environ.get("USERNAME") or ""
    domain = environ.get("USERDOMAIN") or ""
    return f"{domain}\\{user}" if domain and user else user


def _quote_systemd(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-:=@+," for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _systemd_unit(argv: list[str], search: str) -> str:
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
TimeoutStopSec={STOP_TIMEOUT}
WatchdogSec=30

[Install]
WantedBy=default.target
"""


def _plist(argv: list[str], search: str, log_path: str | os.PathLike[str] | None) -> str:
    args = "\n".join(f"    <string>{escape(a)}</string>" for a in argv)
    log = escape(os.fspath(log_path)) if log_path else "/dev/null"
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
  <key>ExitTimeOut</key>
  <integer>{STOP_TIMEOUT}</integer>
  <key>ProcessType</key>
  <string>Interactive</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"""


def _task_xml(argv: list[str], user: str) -> str:
    command = escape(argv[0])
    arguments = escape(subprocess.list2cmdline(argv[1:]))
    principal = f"\n      <UserId>{escape(user)}</UserId>" if user else ""
    trigger_user = f"\n      <UserId>{escape(user)}</UserId>" if user else ""
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>bicameral: supervised MCP servers for this user</Description>
    <URI>\\{TASK_NAME}</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>{trigger_user}
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">{principal}
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>3</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{arguments}</Arguments>
    </Exec>
  </Actions>
</Task>
"""
