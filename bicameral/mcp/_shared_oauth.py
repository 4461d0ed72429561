"""OAuth tokens shared by replicas (``[daemon.store]``), refreshed once for all of them.

Without a store each daemon keeps a server's tokens in its state directory
(`TokenFile`) and its one provider refreshes them. Replicas of a hosted
front must not each refresh: an authorization server that rotates refresh
tokens accepts the first refresh and refuses the others, and every
replica's refresh costs the server a request. With a store:

* `StoreTokens` keeps the server's tokens, their expiry and the client
  registration in one record, ``<prefix>:oauth:<server>``, for every
  replica. A login done with ``bicameral mcp login`` in one replica's
  state directory (a file newer than the record) is taken into it.
* `SharedRefreshProvider`, when its access token has expired, first looks
  at the record: another replica may have refreshed already. If not, it
  takes the lock ``<prefix>:oauth:<server>:refresh`` in the store and, once
  it holds it, looks again (the holder before it may have just finished)
  before it refreshes and writes the record. It refreshes a little before
  the expiry (`_margin`), so no request carries a token in its last
  moment. A replica that finds the lock taken waits for the record to
  change, or for the lock to be free; the lock expires after
  ``lock_timeout`` seconds, so a replica that dies holding it never blocks
  the others for longer. A token the server refuses before its time is
  refreshed the same way, once, and the request sent again.

So the replicas' refreshes of one token are one refresh at the
authorization server, however many calls wait for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.oauth2 import TokenStorage
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from bicameral.daemon import SharedStore, StoreError
from bicameral.mcp._oauth import TokenFile

__all__ = ["SharedRefreshProvider", "StoreTokens"]

logger = logging.getLogger("bicameral.mcp")

#: How often a replica waiting for another's refresh looks at the store.
POLL = 0.05
#: At most this many seconds before its expiry a token is refreshed (`_margin`).
MARGIN = 30.0


def _margin(tokens: OAuthToken) -> float:
    """How long before its expiry a token counts as expired: a quarter of its life, 30 s at most.

    A request sent with a token in its last moment reaches the server after
    it expired (latency, an authorization server that rounds its expiry
    down), and a refused token sends the SDK into a full login: refresh a
    little early instead.
    """
    return min(MARGIN, 0.25 * tokens.expires_in) if tokens.expires_in else 0.0


class StoreTokens(TokenStorage):
    """A server's tokens and client registration in the shared store (one JSON record)."""

    def __init__(self, store: SharedStore, name: str, local: TokenFile) -> None:
        self.store = store
        self.key = store.key("oauth", name)
        self.lock_name = store.key("oauth", name, "refresh")
        #: This replica's own file: where ``mcp login`` writes, taken into the record.
        self.local = local
        self.record: dict[str, Any] = {}

    def changed_elsewhere(self) -> bool:
        return self.local.changed_elsewhere()

    def expires_at(self) -> float | None:
        value = self.record.get("expires_at")
        return float(value) if isinstance(value, int | float) else None

    def where(self) -> str:
        return f"the shared store ({self.store.settings.shown})"

    async def load(self) -> dict[str, Any]:
        """The record as the store has it now (a newer local login is written there first)."""
        raw = await self.store.get(self.key)
        try:
            record = json.loads(raw) if raw else {}
        except ValueError:
            record = {}
        record = record if isinstance(record, dict) else {}
        stamp = self.local.modified()
        if stamp is not None and stamp > float(record.get("updated_at") or 0):
            tokens = await self.local.get_tokens()
            if tokens is not None:
                client = await self.local.get_client_info()
                record = {
                    "tokens": tokens.model_dump(mode="json", exclude_none=True),
                    "expires_at": self.local.expires_at(),
                    "client": client.model_dump(mode="json", exclude_none=True) if client else None,
                    "updated_at": stamp,
                }
                await self.store.put(self.key, json.dumps(record).encode())
                logger.info("OAuth tokens of %s: a local login taken into the store", self.key)
        self.record = record
        return record

    async def _save(self, **changes: Any) -> None:
        record = {**self.record, **changes, "updated_at": time.time()}
        await self.store.put(self.key, json.dumps(record).encode())
        self.record = record

    async def get_tokens(self) -> OAuthToken | None:
        raw = (await self.load()).get("tokens")
        return OAuthToken.model_validate(raw) if isinstance(raw, dict) else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        expires = time.time() + tokens.expires_in if tokens.expires_in is not None else None
        await self._save(
            tokens=tokens.model_dump(mode="json", exclude_none=True), expires_at=expires
        )

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        raw = self.record.get("client") if self.record else (await self.load()).get("client")
        return OAuthClientInformationFull.model_validate(raw) if isinstance(raw, dict) else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self._save(client=client_info.model_dump(mode="json", exclude_none=True))


class SharedRefreshProvider(OAuthClientProvider):
    """The SDK's provider, with its refresh made once across replicas (module docstring)."""

    def __init__(self, *, shared: StoreTokens, **kwargs: Any) -> None:
        super().__init__(storage=shared, **kwargs)
        self.shared = shared

    async def _initialize(self) -> None:
        await super()._initialize()
        self.context.token_expiry_time = self.shared.expires_at()

    def _adopt(self, *, force: bool = False) -> bool:
        """Take the record's tokens if they are not ours and not about to expire.

        `force`: ours were refused; the record's count if they are other ones,
        whatever their expiry says.
        """
        raw = self.shared.record.get("tokens")
        expires = self.shared.expires_at()
        if not isinstance(raw, dict):
            return False
        tokens = OAuthToken.model_validate(raw)
        if not force and expires is not None and expires - _margin(tokens) <= time.time():
            return False
        current = self.context.current_tokens
        if current is not None and current.access_token == tokens.access_token:
            return False
        self.context.current_tokens = tokens
        self.context.token_expiry_time = expires
        return True

    def _stale(self) -> bool:
        """Ours to refresh: expired, or about to (`_margin`), and refreshable."""
        tokens = self.context.current_tokens
        expiry = self.context.token_expiry_time
        soon = expiry is not None and tokens is not None and time.time() > expiry - _margin(tokens)
        return (
            self._initialized
            and (soon or not self.context.is_token_valid())
            and self.context.can_refresh_token()
        )

    async def _auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        # The SDK's flow (`OAuthClientProvider._auth_flow`) would refresh an
        # expired token itself; ours refreshes first, under the same lock,
        # so that by the time the SDK's flow runs the token is fresh.
        async with self.context.lock:
            if not self._initialized:
                await self._initialize()
            if self._stale():
                refresh = self._refresh_once()
                answer: Any = None
                try:
                    while True:
                        answer = yield await refresh.asend(answer)
                except StopAsyncIteration:
                    pass
        flow = super()._auth_flow(request)
        response: Any = None
        retried = False
        try:
            while True:
                outgoing = await flow.asend(response)
                response = yield outgoing
                if (
                    outgoing is request
                    and response.status_code == 401
                    and not retried
                    and self.context.can_refresh_token()
                ):
                    # Our token was refused before its time (a server that
                    # rounds expiries down, a slow answer): refresh once, as
                    # for an expired one, and send again, rather than let the
                    # SDK's flow conclude that a person must log in. (The
                    # SDK's flow holds the lock meanwhile, for us.)
                    retried = True
                    again = self._refresh_once(force=True)
                    reply: Any = None
                    try:
                        while True:
                            reply = yield await again.asend(reply)
                    except StopAsyncIteration:
                        pass
                    if self.context.is_token_valid():
                        self._add_auth_header(request)
                        response = yield request
        except StopAsyncIteration:
            pass

    async def _refresh_once(
        self, *, force: bool = False
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Refresh, unless another replica does or did: yields the refresh request if ours.

        `force`: our token was refused, so the record's, if it is the same,
        is no better: refresh it (once, under the lock) whatever its expiry.
        """
        try:
            await self.shared.load()
            if self._adopt(force=force):
                return
            deadline = time.monotonic() + self.shared.store.settings.lock_timeout + 1.0
            while True:
                lock = await self.shared.store.try_lock(self.shared.lock_name)
                if lock is not None:
                    break
                await anyio.sleep(POLL)
                await self.shared.load()
                if self._adopt(force=force):
                    return
                if time.monotonic() > deadline:  # the store's lock outlived its timeout?
                    raise StoreError("the refresh lock was not released in time")
        except StoreError as exc:
            # Without the store, refreshing here may race another replica;
            # not refreshing fails every call. Refresh, and say so.
            logger.warning("OAuth refresh of %s without the store: %s", self.shared.key, exc)
            await self._refresh((yield await self._refresh_token()))
            return
        try:
            await self.shared.load()  # the holder before us may have just written it
            if self._adopt(force=force):
                return
            await self._refresh((yield await self._refresh_token()))
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.shared.store.unlock(lock)
                except StoreError as exc:
                    logger.warning("OAuth refresh lock of %s: %s", self.shared.key, exc)

    async def _refresh(self, response: httpx2.Response) -> None:
        try:
            if not await self._handle_refresh_response(response):
                self._initialized = False  # refused: the SDK's flow finds out a login is needed
        except StoreError as exc:  # refreshed; only the record could not be written
            logger.warning("OAuth tokens of %s not shared: %s", self.shared.key, exc)
