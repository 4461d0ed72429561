"""Layer 0: everything that differs between Linux, macOS and Windows, and nothing else.

One small module per concern, each with its Linux, macOS and Windows
branches; no other package tests ``sys.platform``. The decisions are pure
functions of a `Platform` (defaulting to `CURRENT`), tested for all three
on any machine; the OS calls are here too, behind small interfaces
(`ProcessTree`, `ProcessPin`, `JobObject`...). See docs/platforms.md.

- `_os`: `Platform`, `CURRENT`.
- `_transport`: Unix socket or loopback TCP, the socket path limit, peer
  credentials, descriptor passing.
- `_home`: the state directory and who may use it (mode bits, or an ACL).
- `_signals`: detaching, stopping, the signals that mean stop or reload.
- `_service`: the systemd unit, the launchd plist, the logon task.
- `_command`: a command resolved as the OS will run it (PATHEXT, ``.cmd``).
- `_tree`, `_winjob`: a server's process tree, stopped as one (process
  groups; Job Objects).
- `_procs`: a pid's start time and owner; a process pinned while stopped.
- `_detach`: spawning the detached daemon; `_locks`, `_pipes`, `_watch`,
  `_epoll`: locks, pipes, directory watches, the poller's epoll.
- `_reaper`: what ends a killed daemon's descendants on POSIX.

Names are loaded on first use: the CLI's fast paths import this package
and pay only for what they touch (the standard library only).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.platform._command import (
        CommandError,
        resolve_command,
    )
    from bicameral.platform._detach import (
        DetachedChild,
        spawn_detached,
    )
    from bicameral.platform._epoll import (
        READABLE,
        EventPoll,
        event_poll,
        has_event_poll,
    )
    from bicameral.platform._home import (
        checks_mode_bits,
        current_uid,
        default_home,
        restrict_to_user,
        short_temp_root,
        user_acl_command,
    )
    from bicameral.platform._locks import (
        can_lock_directories,
        flock,
        lock_held_anywhere,
        locks_pass_to_children,
        record_in_lock,
    )
    from bicameral.platform._os import (
        CURRENT,
        Platform,
    )
    from bicameral.platform._pipes import (
        fd_from_env,
        fd_to_env,
        read_chunk,
        read_line,
        set_nonblocking,
    )
    from bicameral.platform._procs import (
        ProcessInfo,
        ProcessPin,
        probe,
        process_environ,
        reap_if_child,
        start_time_tolerance,
    )
    from bicameral.platform._reaper import (
        TAG_ENV,
        needs_reaper,
        start_reaper,
    )
    from bicameral.platform._service import (
        LAUNCHD_LABEL,
        TASK_NAME,
        ServiceFile,
        service_argv,
        service_file,
        service_path,
    )
    from bicameral.platform._signals import (
        detach_popen_kwargs,
        graceful_signal_names,
        kill_process,
        reload_signal_names,
        stop_uses_rpc,
        terminate_group,
        terminate_process,
    )
    from bicameral.platform._transport import (
        can_pass_fds,
        default_transport,
        fd_opened_for,
        fds_from_ancillary,
        fds_space,
        listener_of,
        peer_uid,
        send_fds,
        socket_path_limit,
        socket_path_problem,
        unix_socket,
    )
    from bicameral.platform._tree import (
        ProcessTree,
        adopt_tree,
        pipes_are_pollable,
        start_tree,
        tree_popen_kwargs,
    )
    from bicameral.platform._watch import (
        DirectoryWatch,
    )
    from bicameral.platform._winjob import (
        JobObject,
    )

__all__ = [
    "CURRENT",
    "LAUNCHD_LABEL",
    "READABLE",
    "TAG_ENV",
    "TASK_NAME",
    "CommandError",
    "DetachedChild",
    "DirectoryWatch",
    "EventPoll",
    "JobObject",
    "Platform",
    "ProcessInfo",
    "ProcessPin",
    "ProcessTree",
    "ServiceFile",
    "adopt_tree",
    "can_lock_directories",
    "can_pass_fds",
    "checks_mode_bits",
    "current_uid",
    "default_home",
    "default_transport",
    "detach_popen_kwargs",
    "event_poll",
    "fd_from_env",
    "fd_opened_for",
    "fd_to_env",
    "fds_from_ancillary",
    "fds_space",
    "flock",
    "graceful_signal_names",
    "has_event_poll",
    "kill_process",
    "listener_of",
    "lock_held_anywhere",
    "locks_pass_to_children",
    "needs_reaper",
    "peer_uid",
    "pipes_are_pollable",
    "probe",
    "process_environ",
    "read_chunk",
    "read_line",
    "reap_if_child",
    "record_in_lock",
    "reload_signal_names",
    "resolve_command",
    "restrict_to_user",
    "send_fds",
    "service_argv",
    "service_file",
    "service_path",
    "set_nonblocking",
    "short_temp_root",
    "socket_path_limit",
    "socket_path_problem",
    "spawn_detached",
    "start_reaper",
    "start_time_tolerance",
    "start_tree",
    "stop_uses_rpc",
    "terminate_group",
    "terminate_process",
    "tree_popen_kwargs",
    "unix_socket",
    "user_acl_command",
]

_MODULES = {
    "CURRENT": "_os",
    "Platform": "_os",
    "can_pass_fds": "_transport",
    "default_transport": "_transport",
    "fd_opened_for": "_transport",
    "fds_from_ancillary": "_transport",
    "fds_space": "_transport",
    "can_lock_directories": "_locks",
    "flock": "_locks",
    "listener_of": "_transport",
    "peer_uid": "_transport",
    "send_fds": "_transport",
    "socket_path_limit": "_transport",
    "socket_path_problem": "_transport",
    "unix_socket": "_transport",
    "checks_mode_bits": "_home",
    "current_uid": "_home",
    "default_home": "_home",
    "restrict_to_user": "_home",
    "short_temp_root": "_home",
    "user_acl_command": "_home",
    "detach_popen_kwargs": "_signals",
    "graceful_signal_names": "_signals",
    "kill_process": "_signals",
    "reload_signal_names": "_signals",
    "stop_uses_rpc": "_signals",
    "terminate_group": "_signals",
    "terminate_process": "_signals",
    "LAUNCHD_LABEL": "_service",
    "TASK_NAME": "_service",
    "ServiceFile": "_service",
    "service_argv": "_service",
    "service_file": "_service",
    "service_path": "_service",
    "CommandError": "_command",
    "resolve_command": "_command",
    "ProcessInfo": "_procs",
    "ProcessPin": "_procs",
    "probe": "_procs",
    "process_environ": "_procs",
    "reap_if_child": "_procs",
    "start_time_tolerance": "_procs",
    "ProcessTree": "_tree",
    "adopt_tree": "_tree",
    "pipes_are_pollable": "_tree",
    "start_tree": "_tree",
    "tree_popen_kwargs": "_tree",
    "JobObject": "_winjob",
    "DetachedChild": "_detach",
    "spawn_detached": "_detach",
    "lock_held_anywhere": "_locks",
    "locks_pass_to_children": "_locks",
    "record_in_lock": "_locks",
    "fd_from_env": "_pipes",
    "fd_to_env": "_pipes",
    "read_chunk": "_pipes",
    "read_line": "_pipes",
    "set_nonblocking": "_pipes",
    "DirectoryWatch": "_watch",
    "READABLE": "_epoll",
    "EventPoll": "_epoll",
    "event_poll": "_epoll",
    "has_event_poll": "_epoll",
    "TAG_ENV": "_reaper",
    "needs_reaper": "_reaper",
    "start_reaper": "_reaper",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
