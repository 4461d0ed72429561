"""Server-to-client requests for stateless-era clients: ``input_required`` rounds.

A 2026-07-28 client cannot be sent a request. When a server behind
bicameral (spoken to in the handshake era) asks for sampling, elicitation or
roots during a client's call, the call's answer to that client becomes an
``input_required`` result carrying the server's requests and an opaque
``requestState``; the client answers them by sending the same call again
with ``inputResponses`` and that state, and gets the call's real result, or
the next round (MCP 2026-07-28, "Multi-round-trip requests").

The server's call meanwhile simply goes on: it runs in a task of its own
(`Rounds.call`), the server's requests wait (`Rounds.ask`) until the retry
brings their answers, and a call parked for longer than `PARK_TIMEOUT`
is abandoned, its server's requests answered with an error.

Which call a server's request belongs to: the one the client has in flight
(the newest, if it has several: routing makes an instance whose clients can
be asked serve one client's calls at a time, docs/mcp.md "Routing").
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from bicameral.mcp._common import UpstreamError
from bicameral.protocol import INVALID_PARAMS, RPCError

__all__ = ["PARK_TIMEOUT", "ROUND_METHODS", "Rounds"]

#: How long a call waits for its client to come back with the answers.
PARK_TIMEOUT = 300.0
#: The requests that may answer ``input_required`` (MCP 2026-07-28).
ROUND_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})


class _Ask:
    """One request of a server, waiting for the client's answer."""

    __slots__ = ("answered", "method", "params", "result")

    def __init__(self, method: str, params: Any) -> None:
        self.method = method
        self.params = params
        self.answered = anyio.Event()
        self.result: dict[str, Any] | None = None  # None once answered: refused


class _Call:
    """One call of the client: its outcome, or the server's requests it waits on."""

    __slots__ = ("asks", "changed", "done", "error", "result")

    def __init__(self) -> None:
        self.asks: dict[str, _Ask] = {}
        self.changed = anyio.Event()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def touch(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class Rounds:
    """The calls of one stateless-era client and the rounds they are in."""

    def __init__(self, start_soon: Callable[[Callable[[], Awaitable[object]]], bool]) -> None:
        self._start_soon = start_soon
        self._calls: list[_Call] = []  # in flight, oldest first
        self.parked: dict[str, _Call] = {}
        self._keys = itertools.count(1)

    async def call(self, params: dict[str, Any], run: Callable[[], Awaitable[Any]]) -> Any:
        """The answer to one call: its result, or ``input_required`` for a round.

        `params` may carry ``requestState`` and ``inputResponses``, a retry;
        `run` forwards the call to its server (a fresh call only).
        """
        state = params.get("requestState")
        if state is not None:
            call = self.parked.pop(state, None) if isinstance(state, str) else None
            if call is None:
                raise RPCError(INVALID_PARAMS, "unknown or expired requestState")
            responses = params.get("inputResponses")
            _deliver(call, responses if isinstance(responses, dict) else {})
        else:
            call = _Call()
            self._calls.append(call)

            async def forward() -> None:
                try:
                    call.result = await run()
                except Exception as exc:  # delivered to whoever waits for the call
                    call.error = exc
                except BaseException:
                    call.error = UpstreamError(INVALID_PARAMS, "the call was cancelled")
                    raise
                finally:
                    call.done = True
                    if call in self._calls:
                        self._calls.remove(call)
                    call.touch()

            if not self._start_soon(forward):
                return await run()
        return await self._outcome(call)

    async def _outcome(self, call: _Call) -> Any:
        while not call.done and not _pending(call):
            await call.changed.wait()
        if call.done:
            if call.error is not None:
                raise call.error
            return call.result
        state = os.urandom(16).hex()
        self.parked[state] = call
        asks = _pending(call)
        return {
            "resultType": "input_required",
            "inputRequests": {
                key: {"method": ask.method, "params": ask.params or {}} for key, ask in asks.items()
            },
            "requestState": state,
        }

    def in_flight(self) -> bool:
        """Whether a call is in flight that a server's request could be answered with."""
        return bool(self._calls)

    async def ask(self, method: str, params: Any) -> dict[str, Any]:
        """A server's request to the client: answered when the client retries its call."""
        if not self._calls:
            raise UpstreamError(
                INVALID_PARAMS,
                f"the MCP client speaks the 2026-07-28 protocol and has no call in flight "
                f"that {method} could be answered with",
            )
        call = self._calls[-1]
        key = f"r{next(self._keys)}"
        ask = call.asks[key] = _Ask(method, params)
        call.touch()
        with anyio.move_on_after(PARK_TIMEOUT):
            await ask.answered.wait()
        call.asks.pop(key, None)
        if ask.result is None:
            raise UpstreamError(INVALID_PARAMS, f"the MCP client did not answer {method}")
        return ask.result

    def forget(self) -> None:
        """The client is gone: whatever its servers asked is refused."""
        for call in [*self._calls, *self.parked.values()]:
            for ask in call.asks.values():
                ask.answered.set()
        self.parked.clear()


def _pending(call: _Call) -> dict[str, _Ask]:
    return {key: ask for key, ask in call.asks.items() if not ask.answered.is_set()}


def _deliver(call: _Call, responses: dict[str, Any]) -> None:
    for key, ask in list(call.asks.items()):
        answer = responses.get(key)
        ask.result = answer if isinstance(answer, dict) else None
        ask.answered.set()
