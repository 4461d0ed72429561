"""Platform choices, each branch pinned on any OS (SPEC §6's Windows path included)."""

from __future__ import annotations

from bicameral.daemon._platform import (
    default_transport,
    detach_popen_kwargs,
    graceful_signal_names,
    is_windows,
    socket_path_limit,
    stop_uses_rpc,
)


def test_windows_uses_tcp_rpc_stop_and_sigbreak() -> None:
    assert is_windows("win32")
    assert default_transport("win32") == "tcp"
    assert stop_uses_rpc("win32")
    assert graceful_signal_names("win32") == ("SIGTERM", "SIGINT", "SIGBREAK")
    assert socket_path_limit("win32") is None
    # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
    assert detach_popen_kwargs("win32") == {"creationflags": 0x00000008 | 0x00000200}


def test_posix_uses_unix_sockets_signals_and_a_new_session() -> None:
    for platform in ("linux", "darwin", "freebsd14"):
        assert not is_windows(platform)
        assert default_transport(platform) == "unix"
        assert not stop_uses_rpc(platform)
        assert graceful_signal_names(platform) == ("SIGTERM", "SIGINT")
        assert detach_popen_kwargs(platform) == {"start_new_session": True}


def test_af_unix_limits() -> None:
    assert socket_path_limit("linux") == 107
    assert socket_path_limit("darwin") == 103
    assert socket_path_limit("freebsd14") == 103
