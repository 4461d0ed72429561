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

from bicameral._lazy import lazy_exports
from bicameral.daemon._errors import ConfigError, DaemonError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from bicameral.daemon._control import (
        STATUS_EXIT_CODES,
        call_daemon,
        default_transport,
        reload,
        restart,
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
    from bicameral.daemon._inspect import inspect, is_alive
    from bicameral.daemon._install import (
        install_service,
        serve_argv,
        service_argv,
        service_for,
        uninstall_service,
    )
    from bicameral.daemon._lock import flock
    from bicameral.daemon._logs import LogFilter, follow_log, parse_since, tail_log
    from bicameral.daemon._options import (
        DAEMON_OPTIONS,
        DaemonOption,
        daemon_options,
        env_default,
        parse_options,
        serve_args,
    )
    from bicameral.daemon._paths import (
        DaemonPaths,
        check_private_dir,
        check_trusted_path,
        resolve_paths,
    )
    from bicameral.daemon._plugin import DaemonHost, DaemonPlugin
    from bicameral.daemon._serve import ServeOptions, run_serve, serve
    from bicameral.daemon._start import StartError, start
    from bicameral.daemon._store import SharedStore, StoreError

__all__, __getattr__, __dir__ = lazy_exports(
    __name__, __file__, eager=["ConfigError", "DaemonError"]
)
