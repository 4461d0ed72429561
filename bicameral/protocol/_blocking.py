"""A small synchronous client for the CLI's fast paths.

It imports only the standard library (``socket``, ``json``) and
`bicameral.protocol._errors`, which does the same: ``bicameral daemon
status`` must answer in well under 100 ms including interpreter start, so
it cannot afford Trio, anyio or orjson.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from bicameral.protocol._errors import RPCError

__all__ = ["BlockingClient"]

_RECV_SIZE = 65536


class BlockingClient:
    """One connection, one request at a time.

    ``call`` sends a request and reads lines until the response with its id
    arrives (notifications from the server are skipped). Use it as a context
    manager or call `close`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._next_id = 0
        self._timeout = sock.gettimeout()

    @classmethod
    def connect_unix(cls, path: str, *, timeout: float | None = 5.0) -> BlockingClient:
        from bicameral.platform import unix_socket

        sock = unix_socket()
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @classmethod
    def connect_tcp(
        cls, address: str, token: str, *, timeout: float | None = 5.0
    ) -> BlockingClient:
        """Connect to ``"host:port"`` and present ``token`` with ``system.attach``."""
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(sock)
        try:
            client.call("system.attach", {"token": token, "mode": "rpc"}, timeout=timeout)
        except BaseException:
            client.close()
            raise
        return client

    def call(self, method: str, params: Any = None, *, timeout: float | None = 5.0) -> Any:
        """Send one request and return its result; raise `RPCError` for an error response.

        Raises `TimeoutError` when no answer arrives within ``timeout`` seconds
        (None: wait for ever), and `ConnectionError` when the server closes.
        """
        self._next_id += 1
        msg_id = self._next_id
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            request["params"] = params
        sock = self._sock
        if timeout != self._timeout:  # settimeout costs two fcntl calls
            sock.settimeout(timeout)
            self._timeout = timeout
        sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        while True:
            response = self._read_message()
            if (
                type(response) is dict
                and response.get("id") == msg_id
                and ("result" in response or "error" in response)
            ):
                if "error" in response:
                    raise RPCError.from_dict(response["error"])
                return response["result"]
            if type(response) is dict and response.get("id") is None and "error" in response:
                # An error the server could not tie to a request (parse error,
                # frame too large): ours, since we send one request at a time.
                raise RPCError.from_dict(response["error"])

    def notify(self, method: str, params: Any = None) -> None:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            request["params"] = params
        self._sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")

    def _read_message(self) -> Any:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = self._buffer[:end]
                self._buffer = self._buffer[end + 1 :]
                if line.strip():
                    return json.loads(line)
                continue
            chunk = self._sock.recv(_RECV_SIZE)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
