"""``bicameral mcp``: the stdio bridge MCP clients launch instead of a server.

Standard library only, on purpose: an MCP client starts this process for
every session, and the SDK (~0.7 s to import), Trio or Typer would be most of
its start-up. It:

1. makes sure the daemon runs (`bicameral.daemon.start`: the same lock and
   single-instance rules as ``bicameral daemon start``, so many bridges
   starting at once converge on one daemon);
2. connects to the socket the descriptor names (or its TCP address, with the
   token), sends ``system.attach {"mode": "mcp", "server"?}`` and reads the
   answer;
3. where descriptors can be passed (a Unix socket: POSIX), hands its own
   stdin and stdout to the daemon (``SCM_RIGHTS``), so the daemon reads and
   writes the MCP client's pipes
   directly and no byte passes through this process; it then waits for the
   daemon to end the session: ``bye`` when the client closed stdin (exit 0),
   or the socket closing without it when the daemon went away (a one-line
   message on stderr, exit 1);
4. otherwise (the TCP transport, the only one on Windows) relays bytes,
   stdin to the socket and the socket to stdout, unchanged, until the client
   closes stdin (exit 0, after the daemon has closed the session, or 2 s at
   most) or the daemon goes away (a one-line message on stderr, exit 1).

The relay is two threads, the same on every platform (Windows cannot
``select`` on a pipe): one copies stdin to the socket, the main one the
socket to stdout. Each blocks in its read and takes data as soon as it
comes; writes block, which is safe because the daemon reads and writes a
connection in separate tasks, and an MCP client reads its server's stdout
independently of writing to its stdin.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from bicameral.platform import can_pass_fds, read_chunk, send_fds, unix_socket

__all__ = ["run_bridge"]

_READ_SIZE = 65536
#: After the client closes stdin: how long the daemon gets to close the session.
_CLOSE_GRACE = 2.0
#: Connect and attach timeout.
_ATTACH_TIMEOUT = 10.0


class _BridgeError(Exception):
    """Why the bridge could not open a session; `code` is the JSON-RPC error code for it."""

    def __init__(self, message: str, code: int = -32603) -> None:
        super().__init__(message)
        self.code = code


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"bicameral mcp: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


_daemon: dict[str, object] = {}  # the pid and log of the daemon we attached to


def _closed() -> str:
    """Why the daemon's side closed, in true words: gone, or still running."""
    pid, paths = _daemon.get("pid"), _daemon.get("paths")
    if isinstance(pid, int) and paths is not None:
        from bicameral.daemon import DaemonPaths, is_alive, read_descriptor

        assert isinstance(paths, DaemonPaths)
        # A daemon that is stopping closes its sessions just before it exits:
        # give it a moment to be gone before calling it still running.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                now = read_descriptor(paths.descriptor)
                running = now is not None and now.pid == pid and is_alive(paths)
            except Exception:  # unreadable: say what is sure
                running = False
            if not running or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if running:
            return (
                f"the daemon (pid {pid}) closed the connection while still running; "
                f"its log says why: {_daemon.get('log')}"
            )
    return "the daemon closed the connection: it stopped or restarted"


def _connect(home: str | None) -> tuple[socket.socket, str | None]:
    """Start the daemon if needed; a connected socket and the TCP token (or None)."""
    from bicameral.daemon import DaemonError, StartError, read_descriptor, resolve_paths, start

    try:
        paths = resolve_paths(home)
    except DaemonError as exc:
        raise _BridgeError(str(exc)) from None
    try:
        started = start(paths)
        if started.get("status") == "started" and hasattr(signal, "SIGCHLD"):
            # The daemon we just spawned is our child and outlives us only in
            # the usual case. Should it stop first, the kernel reaps it at
            # once instead of leaving a zombie until this bridge exits; the
            # bridge starts no other child.
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            _daemon["parent"] = True
    except StartError as exc:
        raise _BridgeError(
            f"the daemon failed to start: {exc.reason} (log: {exc.log_path})"
        ) from None
    except DaemonError as exc:
        raise _BridgeError(str(exc)) from None
    descriptor = read_descriptor(paths.descriptor)
    if descriptor is None:
        raise _BridgeError(f"the daemon's descriptor {paths.descriptor} disappeared")
    _daemon.update(pid=descriptor.pid, log=paths.log, paths=paths)
    try:
        if descriptor.transport == "tcp":
            host, _, port = (descriptor.address or "").rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=_ATTACH_TIMEOUT)
            return sock, descriptor.token
        sock = unix_socket()
        sock.settimeout(_ATTACH_TIMEOUT)
        sock.connect(descriptor.socket_path or "")
        return sock, None
    except (OSError, ValueError) as exc:
        raise _BridgeError(f"cannot connect to the daemon: {exc}") from None


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def _is_tty() -> bool:
    try:
        return os.isatty(0) or os.isatty(1)
    except OSError:
        return False


def _attach(
    sock: socket.socket, server: str | None, token: str | None, profile: str | None = None
) -> tuple[bytes, bool]:
    """Send ``system.attach``; (bytes that arrived after its answer, stdio passing agreed)."""
    params: dict[str, object] = {"mode": "mcp", "client": "bicameral mcp"}
    if server is not None:
        params["server"] = server
    if profile is not None:
        params["profile"] = profile
    if token is not None:
        params["token"] = token
    over_tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
    if not over_tcp and can_pass_fds() and not _is_tty():
        # Not a terminal: the daemon makes the fds non-blocking, and a
        # terminal's mode is shared with the shell that owns it.
        params["stdio"] = "pass"
    request = {"jsonrpc": "2.0", "id": 1, "method": "system.attach", "params": params}
    sock.sendall(json.dumps(request).encode() + b"\n")
    buffer = b""
    while b"\n" not in buffer:
        chunk = sock.recv(_READ_SIZE)
        if not chunk:
            raise _BridgeError(f"during attach, {_closed()}")
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    try:
        answer = json.loads(line)
    except ValueError:
        raise _BridgeError("the daemon's attach answer is not JSON") from None
    if not isinstance(answer, dict) or "error" in answer:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else repr(answer)
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and not isinstance(code, bool):
            raise _BridgeError(str(message), code)
        raise _BridgeError(f"attach refused: {message}")
    result = answer.get("result")
    passing = isinstance(result, dict) and result.get("stdio") == "pass"
    return rest, passing


def _pass_stdio(sock: socket.socket, stdin_fd: int, stdout_fd: int) -> int:
    """Hand our stdin and stdout to the daemon, then wait for it to end the session.

    The daemon says ``bye`` when the client closed its stdin (exit 0); the
    socket closing without it means the daemon went away (exit 1).
    """
    sock.settimeout(None)
    send_fds(sock, [stdin_fd, stdout_fd])
    # Only the daemon holds the client's pipes now: when it closes them, the
    # client sees end of file at once, whatever this process does.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, stdin_fd)
    os.dup2(devnull, stdout_fd)
    os.close(devnull)
    _wait_in_shell(sock)  # returns only where there is no shell to wait in
    received = b""
    while True:
        try:
            chunk = sock.recv(64)
        except OSError:
            chunk = b""
        if not chunk:
            break
        received += chunk
    if received.startswith(b"bye"):
        return 0
    _say(_closed())
    return 1


#: What the bridge becomes once the daemon holds the client's pipes: a shell
#: that waits for the daemon's one line (``$1`` python, ``$2`` home, ``$3`` the
#: daemon's pid).
_WAIT_SCRIPT = (
    'IFS= read -r line <&3; [ "$line" = bye ] && exit 0; '
    'exec "$1" -c "import sys; from bicameral.mcp._bridge import explain_closed; '
    'sys.exit(explain_closed(*sys.argv[1:3]))" "$2" "$3"'
)
_SHELL = "/bin/sh"


def _wait_in_shell(sock: socket.socket) -> None:
    """Become a small shell that waits for the end of the session (exec; no return).

    Once the daemon holds the client's pipes, all a bridge does is wait for
    one line, but a Python interpreter waiting costs ~6 MiB per session: one
    bridge per client and server is most of what N clients of M servers cost
    beyond the servers themselves. A shell waits for ``bye`` in well under
    1 MiB, exits 0 on it, and only on the rare bad end runs Python again to
    say why (`explain_closed`). The exit codes and the message are the same.
    Returns (and the bridge waits itself) where there is no shell to exec,
    and in the bridge that spawned the daemon: it must stay the parent that
    lets the kernel reap the daemon (a shell may not keep SIGCHLD ignored).
    """
    if _daemon.get("parent") or not os.access(_SHELL, os.X_OK):
        return
    try:
        if sock.fileno() == 3:
            os.set_inheritable(3, True)  # dup2 onto itself would leave it close-on-exec
        else:
            os.dup2(sock.fileno(), 3, inheritable=True)
        paths = _daemon.get("paths")
        home = str(getattr(paths, "home", "") or "")
        pid = str(_daemon.get("pid") or "")
        argv = ["bicameral-mcp", "-c", _WAIT_SCRIPT, "bicameral-mcp", sys.executable, home, pid]
        os.execv(_SHELL, argv)
    except OSError:
        return


def explain_closed(home: str, pid: str) -> int:
    """The bad end of a session whose bridge waited in a shell: say why, exit 1.

    `pid`: the daemon the bridge attached to (a new one may be running now).
    """
    from bicameral.daemon import resolve_paths

    try:
        paths = resolve_paths(home or None)
        _daemon.update(pid=int(pid), log=paths.log, paths=paths)
    except Exception:  # unreadable: the plain message
        _daemon.clear()
    _say(_closed())
    return 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _relay(sock: socket.socket, pending: bytes, stdin_fd: int, stdout_fd: int) -> int:
    """Copy stdin to the socket (a thread) and the socket to stdout (here) until the end.

    Exit 0 when the client closed stdin (once the daemon closed the session,
    or after `_CLOSE_GRACE`) or stopped reading; 1, with a message, when the
    daemon went away first.
    """
    import threading

    sock.settimeout(None)
    if pending:
        _write_all(stdout_fd, pending)
    client_closed = threading.Event()
    finished = threading.Event()

    def pump_stdin() -> None:
        while True:
            try:
                data = os.read(stdin_fd, _READ_SIZE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                sock.sendall(data)
            except OSError:  # the daemon is gone: wake the main thread's recv
                _shutdown(sock, socket.SHUT_RDWR)
                return
        # The client closed stdin: end the session, let the daemon close it,
        # and stop waiting for that after the grace.
        client_closed.set()
        _shutdown(sock, socket.SHUT_WR)
        if not finished.wait(_CLOSE_GRACE):
            _shutdown(sock, socket.SHUT_RDWR)

    threading.Thread(target=pump_stdin, name="bicameral-mcp-stdin", daemon=True).start()
    try:
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except OSError:
                data = b""
            if not data:
                if client_closed.is_set():
                    return 0
                _say(_closed())
                return 1
            try:
                _write_all(stdout_fd, data)
            except OSError:  # the client stopped reading: it is gone
                return 0
    finally:
        finished.set()


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


#: How long a refused client may stay silent before the bridge stops waiting for it.
_REFUSE_IDLE = 10.0
#: The longest line read from a refused client; longer ones are skipped, unanswered.
_REFUSE_MAX_LINE = 1 << 20


def _refuse_requests(message: str, code: int, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """Answer each of the client's requests with an MCP error saying `message`, until EOF.

    A client hides its server's stderr: without this, a session the bridge
    cannot open (an unknown or disabled ``--server``, a daemon that cannot
    start) shows the client nothing but "connection closed". The client's
    ``initialize`` gets the reason as its error instead (SPEC §8.7).
    Notifications are ignored. Bounded: a line over `_REFUSE_MAX_LINE` bytes
    is skipped, and a client silent for `_REFUSE_IDLE` seconds is left.
    """
    buffer = b""
    while True:
        chunk = read_chunk(stdin_fd, _READ_SIZE, _REFUSE_IDLE)
        if not chunk:  # silent too long (None), or the end (b"")
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > _REFUSE_MAX_LINE:
            buffer = b""  # part of a line too long to be an initialize: skipped
        for line in lines:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if not isinstance(request, dict) or "method" not in request or "id" not in request:
                continue
            error = {"code": code, "message": message}
            reply = {"jsonrpc": "2.0", "id": request["id"], "error": error}
            try:
                _write_all(stdout_fd, json.dumps(reply).encode() + b"\n")
            except OSError:
                return


def _unknown_profile(home: str | None, profile: str) -> str | None:
    """Why `profile` is not one of the configuration's profiles, or ``None`` (standard library)."""
    import tomllib

    try:
        from bicameral.daemon import resolve_paths

        path = resolve_paths(home).config
        with open(path, "rb") as file:
            profiles = tomllib.load(file).get("mcp", {}).get("profiles", {})
    except Exception:  # unreadable or invalid:
        return None  # the daemon says what is wrong with the file
    names = ["default", *(n for n in profiles if n != "default")]
    if profile in names:
        return None
    return f"no profile named {profile!r} in {path} (profiles: {', '.join(names)})"


def run_bridge(home: Path | str | None, server: str | None, profile: str | None = None) -> int:
    """Run ``bicameral [--home HOME] mcp [--server SERVER | --profile PROFILE]``; its exit code.

    Uses the process's stdin and stdout (file descriptors 0 and 1) for MCP.
    """
    if profile is not None and (not profile or server is not None):
        _say("--profile needs a profile's name and cannot be combined with --server")
        return 2
    home_arg = os.fspath(home) if home is not None else None
    if _stdin_is_terminal():
        # A person ran it by hand: say what it is for, instead of waiting
        # silently for MCP messages (and starting a daemon for nobody).
        unknown = _unknown_profile(home_arg, profile) if profile is not None else None
        if unknown is not None:
            _say(unknown)
            return 1
        target = f" --server {server}" if server else ""
        target = f" --profile {profile}" if profile else target
        _say(
            "this is the MCP stdio bridge that MCP clients launch, not an interactive command; "
            f"configure your client to run `bicameral mcp{target}` (for example "
            f"`claude mcp add NAME -- bicameral mcp{target}`); see `bicameral mcp --help`"
        )
        return 2
    sock: socket.socket | None = None
    try:
        sock, token = _connect(home_arg)
        pending, passing = _attach(sock, server, token, profile)
        if passing and not pending:
            return _pass_stdio(sock, 0, 1)
        return _relay(sock, pending, 0, 1)
    except _BridgeError as exc:
        _say(str(exc))
        if sock is not None:
            sock.close()
            sock = None
        _refuse_requests(f"bicameral: {exc}", exc.code)
        return 1
    except OSError as exc:
        _say(f"lost the daemon: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if sock is not None:
            sock.close()
