"""The listeners: a Unix socket for the daemon, loopback TCP where there is none.

The accept loop, the connection cap and the strangers' cap are `Admission`'s
(shared with the HTTP listener). On top of it the server checks the peer's
uid (Unix); the token gate of the TCP transport is per request, in
`RequestRunner`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from typing import Literal

import trio

from bicameral.platform import peer_uid, socket_path_problem, unix_socket
from bicameral.protocol import _poller
from bicameral.protocol._admission import BACKLOG, Admission, Ticket
from bicameral.protocol._dispatcher import Dispatcher
from bicameral.protocol._limits import InputBudget, Limits
from bicameral.protocol._poller import Poller
from bicameral.protocol._served import ServedConnection

__all__ = ["peer_allowed", "peer_uid", "serve_tcp", "serve_unix"]

logger = logging.getLogger("bicameral.protocol")


def peer_allowed(uid: int | None, own_uid: int) -> bool:
    """Whether a client with ``uid`` may talk to a server run by ``own_uid``.

    Only the same user. An unknown uid (a platform without peer credentials)
    is let through: the socket's mode 0600 already keeps others out there.
    """
    return uid is None or uid == own_uid


class _Server:
    """What the accept loop and the connection tasks share."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        limits: Limits,
        transport: Literal["unix", "tcp"],
        token: str | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.limits = limits
        self.transport = transport
        self.token = token
        # On TCP, connections that have not shown the token yet are counted
        # apart (the grace is the connection's own: `RequestRunner`).
        self.admission = Admission(
            max_connections=limits.max_connections,
            max_strangers=limits.max_unauthenticated if transport == "tcp" else None,
            what="TCP" if transport == "tcp" else "",
        )
        self.own_uid = os.geteuid() if hasattr(os, "geteuid") else None
        self.poller: Poller | None = None
        self.budget = InputBudget(limits.max_buffered)

    async def serve(
        self, listener: socket.socket | None, task_status: trio.TaskStatus[trio.Nursery]
    ) -> None:
        """Accept connections on ``listener`` until cancelled.

        The started value is the nursery the connections run in, where more
        accept loops may be started (a Unix listener bound again).
        """
        self.poller = Poller() if _poller.ENABLED else None
        try:
            async with trio.open_nursery() as nursery:
                if self.poller is not None:
                    nursery.start_soon(self.poller.run)
                if listener is not None:
                    nursery.start_soon(self.accept_loop, listener, nursery)
                task_status.started(nursery)
                await trio.sleep_forever()  # keeps the nursery open for accept loops
        finally:
            if self.poller is not None:
                self.poller.close()

    async def accept_loop(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        await self.admission.accept_loop(listener, nursery, self.run_connection)

    async def run_connection(self, sock: socket.socket, ticket: Ticket) -> None:
        try:
            sock.setblocking(False)
            uid: int | None = None
            if self.transport == "unix":
                uid = peer_uid(sock)
                if self.own_uid is not None and not peer_allowed(uid, self.own_uid):
                    logger.warning("refusing a connection from uid %s (not ours)", uid)
                    return
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = ServedConnection(
                sock,
                self.dispatcher,
                self.limits,
                transport=self.transport,
                peer_uid=uid,
                token=self.token,
                poller=self.poller,
                budget=self.budget,
                on_authenticated=ticket.authenticated,
            )
            await conn.serve()
        except Exception:
            # One connection's failure must never take the server down.
            logger.exception("connection handler failed")


def _bind_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` whose file is mode 0600 from the start.

    The mode of the socket file comes from the umask at bind(2) time, so the
    umask is tightened around the (synchronous) bind: no other user can
    connect in the window before a chmod. A leftover socket file nobody
    listens on is replaced; a live one is left alone (EADDRINUSE).
    """
    problem = socket_path_problem(path)
    if problem is not None:
        raise OSError(errno.ENAMETOOLONG, problem, path)
    _remove_stale_socket(path)
    sock = unix_socket()
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError as exc:  # bind(2)'s errors do not name the path
            raise OSError(exc.errno, f"cannot bind {path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return  # bind fails with EADDRINUSE and names the path
    probe = unix_socket()
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


SOCKET_CHECK_INTERVAL = 1.0
"""Seconds between two checks that the socket file is still the one we bound."""


def _file_id(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


class _UnixListener:
    """The listener at a Unix socket path, bound again when its file goes away.

    A listening socket lives as long as it is open, but clients find it by
    its path: when something deletes the file (a cleanup of ``/tmp`` or of
    the runtime dir) or binds another socket in its place, the daemon runs on
    and nobody can reach it. `keep` looks at the path every
    `SOCKET_CHECK_INTERVAL` seconds (one ``lstat``) and, when the file is gone
    or is a socket that is not ours, binds a new listener there and retires
    the old one; connections already accepted are not touched. A path taken
    by something that is not a socket is left alone and reported once.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = _bind_unix(path)
        self.file_id = _file_id(path)
        self._accepting: trio.CancelScope | None = None

    def accept_in(self, server: _Server, nursery: trio.Nursery) -> None:
        """Run the accept loop of the current listener (closing it when it ends)."""
        scope = trio.CancelScope()
        sock = self.sock
        self._accepting = scope

        async def accept() -> None:
            try:
                with scope:
                    await server.accept_loop(sock, nursery)
            finally:
                sock.close()

        nursery.start_soon(accept)

    async def keep(self, server: _Server, nursery: trio.Nursery) -> None:
        reported = False
        while True:
            await trio.sleep(SOCKET_CHECK_INTERVAL)
            try:
                st: os.stat_result | None = os.lstat(self.path)
            except FileNotFoundError:
                st = None
            except OSError:
                continue
            if st is not None and (st.st_dev, st.st_ino) == self.file_id:
                reported = False
                continue
            if st is not None and not stat.S_ISSOCK(st.st_mode):
                if not reported:
                    logger.error(
                        "socket path %s was replaced by something that is not a socket; "
                        "new clients cannot connect until it is removed",
                        self.path,
                    )
                    reported = True
                continue
            what = "deleted" if st is None else "replaced by another socket"
            try:
                sock = _bind_unix(self.path)
                try:
                    file_id = _file_id(self.path)
                except OSError:
                    sock.close()
                    raise
            except OSError as exc:
                if not reported:
                    logger.error(
                        "socket file %s was %s and cannot be bound again: %s", self.path, what, exc
                    )
                    reported = True
                continue
            logger.warning("socket file %s was %s; listening there again", self.path, what)
            old = self._accepting
            self.sock, self.file_id = sock, file_id
            self.accept_in(server, nursery)
            if old is not None:
                old.cancel()
            reported = False

    def remove_file(self) -> None:
        """Remove the socket file if it is still the one we bound last."""
        try:
            if _file_id(self.path) == self.file_id:
                os.unlink(self.path)
        except OSError:
            pass


async def serve_unix(
    path: str | os.PathLike[str],
    dispatcher: Dispatcher,
    *,
    limits: Limits = Limits(),  # noqa: B008  (frozen, so sharing the default is safe)
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``dispatcher`` on a Unix socket at ``path`` until cancelled.

    The socket file is created with mode 0600 and removed on exit (if it is
    still ours); if it is deleted or replaced meanwhile, it is bound again
    (`_UnixListener`). Connections from another uid are refused and logged; beyond
    ``limits.max_connections`` new connections are closed at once.
    ``task_status.started(path)`` is called once the socket is listening, so
    ``await nursery.start(serve_unix, ...)`` returns when clients can connect.
    """
    path = os.fspath(path)
    listener = _UnixListener(path)
    server = _Server(dispatcher, limits, "unix", None)
    try:
        async with trio.open_nursery() as nursery:
            connections = await nursery.start(server.serve, None)
            listener.accept_in(server, connections)
            nursery.start_soon(listener.keep, server, connections)
            task_status.started(path)
    finally:
        listener.sock.close()
        listener.remove_file()


async def serve_tcp(
    host: str,
    port: int,
    dispatcher: Dispatcher,
    *,
    token: str,
    limits: Limits = Limits(),  # noqa: B008
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``dispatcher`` on TCP ``host:port`` (port 0: any free one) until cancelled.

    Meant for loopback: every request before a successful ``system.attach``
    whose params carry ``token`` is answered `UNAUTHORIZED` and never reaches the
    dispatcher. ``task_status.started("host:port")`` names the bound address.
    """
    if not token:
        raise ValueError("serve_tcp needs a non-empty token")
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, sockaddr = infos[0]
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(sockaddr)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        bound_host, bound_port = listener.getsockname()[:2]
    except BaseException:
        listener.close()
        raise
    address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
    server = _Server(dispatcher, limits, "tcp", token)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            task_status.started(address)
    finally:
        listener.close()
