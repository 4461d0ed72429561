"""The bicameral daemon: one detached Trio process per user and state directory.

Two halves with different import budgets:

- the client side (:func:`start`, :func:`stop`, :func:`status`,
  :func:`restart`, :func:`is_alive`, :func:`resolve_paths`), which the CLI's
  fast path calls, imports only the standard library;
- the server side (:func:`serve`, the plugin interface :class:`DaemonPlugin`
  and :class:`DaemonHost`) imports Trio, the supervisor and the protocol.

Every name is loaded on first use, so importing a submodule (the spawned
daemon imports ``_serve``, the CLI ``_control``) pays only for what it uses.
"""

from __future__ import annotations

from bicameral.daemon._errors import ConfigError, DaemonError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bicameral.daemon._control import (
        STATUS_EXIT_CODES,
        StartError,
        call_daemon,
        inspect,
        is_alive,
        reload,
        restart,
        start,
        status,
        stop,
    )
    from bicameral.daemon._descriptor import Descriptor, MalformedDescriptor, read_descriptor
    from bicameral.daemon._doctor import (
        OK,
        PROBLEM,
        WARNING,
        Check,
        daemon_checks,
        daemon_environ,
        lock_file_held,
        run_checks,
    )
    from bicameral.daemon._files import read_regular, write_atomic
    from bicameral.daemon._http import read_http_token
    from bicameral.daemon._identity import identity_matches, probe
    from bicameral.daemon._install import (
        install_service,
        serve_argv,
        service_file,
        uninstall_service,
    )
    from bicameral.daemon._lock import flock
    from bicameral.daemon._logs import LogFilter, follow_log, parse_since, tail_log
    from bicameral.daemon._paths import (
        DaemonPaths,
        check_private_dir,
        check_trusted_path,
        resolve_paths,
    )
    from bicameral.daemon._platform import default_transport
    from bicameral.daemon._plugin import DaemonHost, DaemonPlugin
    from bicameral.daemon._serve import ServeOptions, serve

__all__ = [
    "OK",
    "PROBLEM",
    "STATUS_EXIT_CODES",
    "WARNING",
    "Check",
    "ConfigError",
    "DaemonError",
    "DaemonHost",
    "DaemonPaths",
    "DaemonPlugin",
    "Descriptor",
    "LogFilter",
    "MalformedDescriptor",
    "ServeOptions",
    "StartError",
    "call_daemon",
    "check_private_dir",
    "check_trusted_path",
    "daemon_checks",
    "daemon_environ",
    "default_transport",
    "flock",
    "follow_log",
    "identity_matches",
    "inspect",
    "install_service",
    "is_alive",
    "lock_file_held",
    "parse_since",
    "probe",
    "read_descriptor",
    "read_http_token",
    "read_regular",
    "reload",
    "resolve_paths",
    "restart",
    "run_checks",
    "serve",
    "serve_argv",
    "service_file",
    "start",
    "status",
    "stop",
    "tail_log",
    "uninstall_service",
    "write_atomic",
]

_LAZY = {
    "StartError": "_control",
    "call_daemon": "_control",
    "is_alive": "_control",
    "reload": "_control",
    "restart": "_control",
    "start": "_control",
    "status": "_control",
    "stop": "_control",
    "Descriptor": "_descriptor",
    "MalformedDescriptor": "_descriptor",
    "read_descriptor": "_descriptor",
    "read_http_token": "_http",
    "read_regular": "_files",
    "write_atomic": "_files",
    "DaemonPaths": "_paths",
    "check_private_dir": "_paths",
    "check_trusted_path": "_paths",
    "resolve_paths": "_paths",
    "DaemonHost": "_plugin",
    "DaemonPlugin": "_plugin",
    "ServeOptions": "_serve",
    "serve": "_serve",
    "Check": "_doctor",
    "LogFilter": "_logs",
    "OK": "_doctor",
    "PROBLEM": "_doctor",
    "STATUS_EXIT_CODES": "_control",
    "WARNING": "_doctor",
    "daemon_checks": "_doctor",
    "daemon_environ": "_doctor",
    "default_transport": "_platform",
    "flock": "_lock",
    "follow_log": "_logs",
    "identity_matches": "_identity",
    "inspect": "_control",
    "install_service": "_install",
    "lock_file_held": "_doctor",
    "parse_since": "_logs",
    "probe": "_identity",
    "run_checks": "_doctor",
    "serve_argv": "_install",
    "service_file": "_install",
    "tail_log": "_logs",
    "uninstall_service": "_install",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bicameral.daemon' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"bicameral.daemon.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
