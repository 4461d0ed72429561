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
- `_resources`: the descriptor limit and handing the heap back.

Names are loaded on first use: the CLI's fast paths import this package
and pay only for what they touch (the standard library only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bicameral._lazy import lazy_exports

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
    from bicameral.platform._resources import (
        UNLIMITED,
        nofile_limits,
        release_heap,
        set_nofile_soft,
    )
    from bicameral.platform._service import (
        LAUNCHD_LABEL,
        TASK_NAME,
        ServiceFile,
        service_file,
        service_logs_to_file,
        service_path,
        service_python,
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
        bytes_waiting,
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

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
