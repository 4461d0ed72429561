"""`Connection`: one client connection as a method handler sees it.

Who the client is (``peer_uid``, ``authenticated``, ``transport``), room
for the layers above (``state``), the limits it is served under, and what a
handler may do with it: notify the client, or take the connection over
after its ``system.attach`` (`upgrade`). How a connection is read and its
requests are run is `ServedConnection`'s business (`_served`), the object
the server actually makes; the handlers need only this.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeAlias

import trio

from bicameral.protocol._framing import encode
from bicameral.protocol._limits import InputBudget, Limits
from bicameral.protocol._linewriter import LineWriter

__all__ = ["Connection", "UpgradeHandler"]

#: ``async def handler(stream, buffered)``: takes the connection over after an
#: upgrade. ``stream`` is the connection as a `trio.SocketStream`;
#: ``buffered`` the bytes already received past the upgrading request.
UpgradeHandler: TypeAlias = Callable[[trio.SocketStream, bytes], Awaitable[object]]


class Connection:
    """Per-connection state, as a method handler sees it.

    Attributes:
      peer_uid: the client's user id from the kernel (Unix socket), or None
        where there is none (TCP) or the platform cannot tell.
      authenticated: True on a Unix socket (the peer credentials were
        checked); on TCP, True once ``system.attach`` presented the token.
      transport: ``"unix"`` or ``"tcp"``.
      state: free for the layers above (session ids, attach mode...).
    """

    def __init__(
        self,
        sock: socket.socket,
        limits: Limits,
        *,
        transport: Literal["unix", "tcp"],
        peer_uid: int | None = None,
        authenticated: bool = True,
        budget: InputBudget | None = None,
    ) -> None:
        self.peer_uid = peer_uid
        self.transport = transport
        self.authenticated = authenticated
        self.state: dict[str, Any] = {}
        self._sock = sock
        self._limits = limits
        self._out = LineWriter(sock)
        # Shared by all of the server's connections.
        self._budget = budget
        # Set while a request that may upgrade runs, and by `upgrade`.
        self._in_barrier = False
        self._upgrade: UpgradeHandler | None = None

    @property
    def limits(self) -> Limits:
        """The limits this connection is served under."""
        return self._limits

    @property
    def input_budget(self) -> InputBudget | None:
        """The server-wide budget of unfinished input (`Limits.max_buffered`).

        For an upgrade handler's own reader: counting its unfinished
        messages here keeps the one limit over everything the server holds.
        """
        return self._budget

    async def send_notification(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to the client.

        Raises `ConnectionError` when the connection can no longer be written.
        """
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not await self._out.send(encode(message)):
            raise ConnectionError("connection closed")

    def upgrade(self, handler: UpgradeHandler) -> None:
        """Hand the connection to ``handler`` once the current request is answered.

        Only a request the reader runs to completion before reading on (a
        ``system.attach`` sent on its own, not inside a batch) can upgrade.
        When its handler returns successfully and the response is written,
        the server stops reading JSON-RPC, waits for the connection's other
        requests to finish (their responses are still written), and then
        calls ``await handler(stream, buffered)``; the connection is closed
        when that returns. If the handler raises instead, nothing happens.
        """
        if not self._in_barrier:
            raise RuntimeError("only a system.attach request sent on its own can upgrade")
        if self._upgrade is not None:
            raise RuntimeError("the connection is already being upgraded")
        self._upgrade = handler
