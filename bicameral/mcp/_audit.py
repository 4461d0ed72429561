"""One audit entry per client ``tools/call`` (``[daemon.audit]``, `bicameral.daemon`'s file).

`audited` wraps the one place a client's ``tools/call`` is forwarded to its
server (`ClientConn`'s request path): it times the call, tells its outcome
and hands the entry to the daemon's audit log. The log leaves out
``arguments`` and ``result`` unless ``arguments = true``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from bicameral.protocol import RPCError

__all__ = ["audited"]

logger = logging.getLogger("bicameral.mcp")


async def audited(
    sink: Callable[[Mapping[str, Any]], None],
    call: Callable[[], Awaitable[Any]],
    *,
    client: Mapping[str, Any],
    view: str | None,
    server: str,
    params: Mapping[str, Any],
) -> Any:
    """``await call()``, with one entry written to `sink` however it ends.

    `client` names the session (its id, and the name and version it gave);
    `view` is the one server the client attached to, ``None`` for the
    aggregated view (``"*"`` in the log); `params` are the call's as sent
    to `server` (``name`` is the tool's own name there).
    """
    started = time.perf_counter()
    entry: dict[str, Any] = {
        "client": dict(client),
        "view": view or "*",
        "server": server,
        "tool": params.get("name"),
        "outcome": "error",
    }
    try:
        result = await call()
    except anyio.get_cancelled_exc_class():
        entry["outcome"] = "cancelled"
        raise
    except RPCError as exc:
        entry["error"] = {"code": exc.code, "message": exc.message}
        raise
    except Exception as exc:
        entry["error"] = {"message": repr(exc)}
        raise
    else:
        failed = isinstance(result, Mapping) and bool(result.get("isError"))
        entry["outcome"] = "tool-error" if failed else "ok"
        entry["result"] = result
        return result
    finally:
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        entry["arguments"] = params.get("arguments")
        try:
            sink(entry)
        except (OSError, ValueError) as exc:  # a full disk must not fail the call
            logger.warning("audit log: cannot write an entry: %s", exc)
