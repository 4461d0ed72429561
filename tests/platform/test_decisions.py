"""The pure platform decisions, each pinned for Linux, macOS and Windows on any machine."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import pytest

from bicameral.platform import (
    CURRENT,
    Platform,
    checks_mode_bits,
    default_home,
    default_transport,
    detach_popen_kwargs,
    graceful_signal_names,
    has_event_poll,
    locks_pass_to_children,
    needs_reaper,
    pipes_are_pollable,
    reload_signal_names,
    socket_path_limit,
    socket_path_problem,
    stop_uses_rpc,
    tree_popen_kwargs,
    user_acl_command,
)
from bicameral.platform._reaper import reaper_argv

LINUX, MACOS, WINDOWS = Platform.LINUX, Platform.MACOS, Platform.WINDOWS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("linux", LINUX),
        ("linux2", LINUX),
        ("darwin", MACOS),
        ("freebsd14", MACOS),  # the BSDs take macOS's branch
        ("win32", WINDOWS),
        ("cygwin", WINDOWS),
    ],
)
def test_sys_platform_values_name_a_family(value: str, expected: Platform) -> None:
    assert Platform.of(value) is expected


def test_windows_uses_tcp_an_rpc_stop_and_sigbreak() -> None:
    assert default_transport(WINDOWS) == "tcp"
    assert stop_uses_rpc(WINDOWS)
    assert graceful_signal_names(WINDOWS) == ("SIGTERM", "SIGINT", "SIGBREAK")
    assert reload_signal_names(WINDOWS) == ()
    assert socket_path_limit(WINDOWS) is None
    # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP, the values of the Windows SDK
    assert detach_popen_kwargs(WINDOWS) == {"creationflags": 0x00000008 | 0x00000200}


@pytest.mark.parametrize("platform", [LINUX, MACOS])
def test_posix_uses_unix_sockets_signals_and_a_new_session(platform: Platform) -> None:
    assert default_transport(platform) == "unix"
    assert not stop_uses_rpc(platform)
    assert graceful_signal_names(platform) == ("SIGTERM", "SIGINT")
    assert reload_signal_names(platform) == ("SIGHUP",)
    assert detach_popen_kwargs(platform) == {"start_new_session": True}


def test_af_unix_limits_are_107_on_linux_and_103_on_macos() -> None:
    assert socket_path_limit(LINUX) == 107
    assert socket_path_limit(MACOS) == 103
    path_104 = "/" + "p" * 96 + "/d.sock"
    assert len(path_104) == 104
    assert socket_path_problem(path_104, LINUX) is None
    problem = socket_path_problem(path_104, MACOS)
    assert problem is not None
    # One line that names the size, the limit, the platform and the ways out.
    assert "104 bytes" in problem and "macOS" in problem and "103" in problem
    assert "--home" in problem and "--transport tcp" in problem and "\n" not in problem
    assert "--transport tcp" in (socket_path_problem("/x", WINDOWS) or "")


def test_state_dir_is_dot_bicameral_or_localappdata() -> None:
    assert default_home(LINUX, user_home="/home/u") == PurePosixPath("/home/u/.bicameral")
    assert default_home(MACOS, user_home="/Users/u") == PurePosixPath("/Users/u/.bicameral")
    env = {"LOCALAPPDATA": r"C:\Users\u\AppData\Local"}
    assert default_home(WINDOWS, environ=env, user_home=r"C:\Users\u") == PureWindowsPath(
        r"C:\Users\u\AppData\Local\bicameral"
    )
    # Unset or relative (not to be trusted): where Windows puts it.
    for broken in ({}, {"LOCALAPPDATA": r"relative\dir"}):
        assert default_home(WINDOWS, environ=broken, user_home=r"C:\Users\u") == PureWindowsPath(
            r"C:\Users\u\AppData\Local\bicameral"
        )


def test_privacy_is_mode_bits_on_posix_and_an_acl_on_windows() -> None:
    assert checks_mode_bits(LINUX) and checks_mode_bits(MACOS)
    assert not checks_mode_bits(WINDOWS)
    command = user_acl_command(r"C:\Users\u\AppData\Local\bicameral", r"DOMAIN\u")
    # Nothing inherited from the parent; full control for this user alone,
    # inherited by what is created inside.
    assert command == [
        "icacls",
        r"C:\Users\u\AppData\Local\bicameral",
        "/inheritance:r",
        "/grant:r",
        r"DOMAIN\u:(OI)(CI)F",
        "/Q",
    ]


def test_process_trees_are_groups_on_posix_and_suspended_jobs_on_windows() -> None:
    linux = tree_popen_kwargs(LINUX)
    assert linux["start_new_session"] is True
    # PR_SET_PDEATHSIG, armed through this machine's libc: there only on Linux.
    assert callable(linux.get("preexec_fn")) == CURRENT.linux
    assert tree_popen_kwargs(MACOS) == {"start_new_session": True}
    # CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED: resumed once in its Job Object
    assert tree_popen_kwargs(WINDOWS) == {"creationflags": 0x00000200 | 0x00000004}
    assert pipes_are_pollable(LINUX) and pipes_are_pollable(MACOS)
    assert not pipes_are_pollable(WINDOWS)


def test_no_orphans_needs_a_reaper_on_posix_only() -> None:
    assert needs_reaper(LINUX) and needs_reaper(MACOS)
    assert not needs_reaper(WINDOWS)  # Job Objects die with the daemon
    linux = reaper_argv("/py", "/h", "1:2:/h", 5, LINUX)
    assert linux[1:3] == ["-S", "-I"]  # no site: milliseconds, nothing third-party
    macos = reaper_argv("/py", "/h", "1:2:/h", 5, MACOS)
    assert macos[1] == "-I" and "-S" not in macos  # psutil lives in site-packages
    assert macos[-3:] == ["/h", "1:2:/h", "5"]


def test_locks_and_pollers() -> None:
    assert locks_pass_to_children(LINUX) and locks_pass_to_children(MACOS)
    assert not locks_pass_to_children(WINDOWS)  # msvcrt locks belong to the handle
    assert has_event_poll(LINUX)
    assert not has_event_poll(MACOS) and not has_event_poll(WINDOWS)
