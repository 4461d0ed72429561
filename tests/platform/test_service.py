"""Service files: the systemd unit, the launchd plist, the Task Scheduler logon task."""

from __future__ import annotations

import plistlib
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath, PureWindowsPath

from bicameral.daemon import service_argv
from bicameral.platform import LAUNCHD_LABEL, Platform, service_file, service_path

ARGV = ["/usr/bin/python3", "-m", "bicameral.daemon", "serve", "--home", "/home/u/my dir"]
WIN_ENV = {
    "LOCALAPPDATA": r"C:\Users\u\AppData\Local",
    "USERNAME": "u",
    "USERDOMAIN": "PC",
    "PATH": r"C:\Windows",
}
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}

#: Every key launchd.plist(5) documents for a job; the plist may use no other.
LAUNCHD_KEYS = {
    "Label", "Disabled", "UserName", "GroupName", "inetdCompatibility",
    "LimitLoadToHosts", "LimitLoadFromHosts", "LimitLoadToSessionType",
    "LimitLoadToHardware", "LimitLoadFromHardware", "Program", "ProgramArguments",
    "EnableGlobbing", "EnableTransactions", "EnablePressuredExit", "OnDemand",
    "ServiceIPC", "KeepAlive", "RunAtLoad", "RootDirectory", "WorkingDirectory",
    "EnvironmentVariables", "Umask", "TimeOut", "ExitTimeOut", "ThrottleInterval",
    "InitGroups", "WatchPaths", "QueueDirectories", "StartOnMount", "StartInterval",
    "StartCalendarInterval", "StandardInPath", "StandardOutPath", "StandardErrorPath",
    "Debug", "WaitForDebugger", "SoftResourceLimits", "HardResourceLimits", "Nice",
    "ProcessType", "AbandonProcessGroup", "LowPriorityIO", "LowPriorityBackgroundIO",
    "MaterializeDatalessFiles", "LaunchOnlyOnce", "MachServices", "Sockets",
    "LaunchEvents", "SessionCreate", "AssociatedBundleIdentifiers",
}  # fmt: skip
KEEPALIVE_KEYS = {"SuccessfulExit", "NetworkState", "PathState", "OtherJobEnabled", "Crashed"}
PROCESS_TYPES = {"Background", "Standard", "Adaptive", "Interactive"}


def test_systemd_unit_is_notify_type_with_quoted_args() -> None:
    service = service_file(ARGV, platform=Platform.LINUX, path="/usr/bin", user_home="/home/u")
    unit = service.text
    assert "Type=notify" in unit
    assert 'ExecStart=/usr/bin/python3 -m bicameral.daemon serve --home "/home/u/my dir"' in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "Environment=PATH=/usr/bin" in unit
    assert service.path == PurePosixPath("/home/u/.config/systemd/user/bicameral.service")
    assert "systemctl --user enable --now bicameral" in service.enable
    assert service.data() == unit.encode("utf-8")


def test_launchd_plist_uses_documented_keys_only_and_runs_the_argv() -> None:
    service = service_file(
        ARGV,
        platform=Platform.MACOS,
        log_path="/Users/u/.bicameral/daemon.log",
        path="/opt/homebrew/bin:/usr/bin",
        user_home="/Users/u",
    )
    plist = plistlib.loads(service.data())
    assert set(plist) <= LAUNCHD_KEYS, set(plist) - LAUNCHD_KEYS
    assert plist["Label"] == LAUNCHD_LABEL
    assert plist["ProgramArguments"] == ARGV
    assert plist["RunAtLoad"] is True
    # Restarted after a crash, not after a requested stop.
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert set(plist["KeepAlive"]) <= KEEPALIVE_KEYS
    assert plist["ProcessType"] in PROCESS_TYPES
    assert plist["ExitTimeOut"] == 15
    assert plist["EnvironmentVariables"] == {"PATH": "/opt/homebrew/bin:/usr/bin"}
    assert plist["StandardErrorPath"] == "/Users/u/.bicameral/daemon.log"
    assert service.path == PurePosixPath(f"/Users/u/Library/LaunchAgents/{LAUNCHD_LABEL}.plist")
    assert service.enable == f"launchctl bootstrap gui/$(id -u) {service.path}"
    assert service.disable == f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}"


def test_windows_logon_task_runs_pythonw_detached_at_this_users_logon() -> None:
    argv = service_argv(r"C:\Python311\python.exe", r"C:\Users\u\my state", Platform.WINDOWS)
    assert argv[0] == r"C:\Python311\pythonw.exe"  # no console window at logon
    assert argv[1:5] == ["-m", "bicameral.daemon", "serve", "--detached"]
    service = service_file(argv, platform=Platform.WINDOWS, environ=WIN_ENV)
    data = service.data()
    assert data[:2] == b"\xff\xfe"  # UTF-16 with its BOM, what schtasks /XML reads
    root = ET.fromstring(data.decode("utf-16"))
    assert root.tag == f"{{{TASK_NS['t']}}}Task"
    trigger = root.find("t:Triggers/t:LogonTrigger", TASK_NS)
    assert trigger is not None
    assert trigger.findtext("t:UserId", namespaces=TASK_NS) == r"PC\u"
    principal = root.find("t:Principals/t:Principal", TASK_NS)
    assert principal is not None
    assert principal.findtext("t:LogonType", namespaces=TASK_NS) == "InteractiveToken"
    assert principal.findtext("t:RunLevel", namespaces=TASK_NS) == "LeastPrivilege"
    settings = root.find("t:Settings", TASK_NS)
    assert settings is not None
    assert settings.findtext("t:ExecutionTimeLimit", namespaces=TASK_NS) == "PT0S"
    assert settings.findtext("t:MultipleInstancesPolicy", namespaces=TASK_NS) == "IgnoreNew"
    assert settings.findtext("t:RestartOnFailure/t:Interval", namespaces=TASK_NS) == "PT1M"
    exe = root.find("t:Actions/t:Exec", TASK_NS)
    assert exe is not None
    assert exe.findtext("t:Command", namespaces=TASK_NS) == argv[0]
    arguments = exe.findtext("t:Arguments", namespaces=TASK_NS) or ""
    # The state dir with its space is one argument, quoted as Windows parses it.
    assert arguments == subprocess.list2cmdline(argv[1:])
    assert r'"C:\Users\u\my state"' in arguments
    assert service.path == PureWindowsPath(r"C:\Users\u\AppData\Local\bicameral\bicameral-task.xml")
    assert service.enable.startswith(f'schtasks /Create /TN bicameral /XML "{service.path}" /F')
    assert "schtasks /Delete /TN bicameral /F" in service.disable


def test_service_paths_for_each_platform() -> None:
    assert service_path(Platform.LINUX, "/home/u").name == "bicameral.service"
    assert service_path(Platform.MACOS, "/Users/u").parent == PurePosixPath(
        "/Users/u/Library/LaunchAgents"
    )
    assert service_path(Platform.WINDOWS, r"C:\Users\u", environ={}) == PureWindowsPath(
        r"C:\Users\u\AppData\Local\bicameral\bicameral-task.xml"
    )


def test_posix_service_argv_is_the_foreground_daemon() -> None:
    for platform in (Platform.LINUX, Platform.MACOS):
        argv = service_argv("/usr/bin/python3", "/home/u/.bicameral", platform)
        assert argv == ["/usr/bin/python3", "-m", "bicameral.daemon", "serve", "--home",
                        "/home/u/.bicameral"]  # fmt: skip
        assert shlex.join(argv)  # plain strings
