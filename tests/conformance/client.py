"""The official conformance suite's client scenarios, carried out through bicameral.

``python tests/conformance/client.py URL`` is the suite's client command
(``conformance client --command "python tests/conformance/client.py"``; the
suite appends the scenario server's URL and sets ``MCP_CONFORMANCE_SCENARIO``,
``MCP_CONFORMANCE_CONTEXT`` and ``MCP_CONFORMANCE_PROTOCOL_VERSION``). For
one scenario it:

1. makes a fresh state directory (short, under /tmp) whose ``config.toml``
   has URL as the remote server ``conf`` (``auth = "oauth"`` for the
   ``auth/*`` scenarios, with the pre-registered ``client_id`` and
   ``client_secret`` from the context where the scenario gives them, and a
   Client ID Metadata Document URL for the servers that accept one);
2. for an ``auth/*`` scenario, logs in without a person:
   ``bicameral mcp login conf --no-browser`` prints the authorization URL on
   a line of its own and waits; this script fetches it with an HTTP client
   (the suite's authorization server answers with a redirect to the
   loopback callback at once, no user involved) and follows that redirect;
3. starts the daemon, drives the scenario with the official SDK's `Client`
   over the bridge ``bicameral mcp --server conf`` (the era the suite asks
   for: the handshake for 2025-11-25, ``server/discover`` for 2026-07-28);
4. stops the daemon and deletes the state directory, whatever happened.

It exits 0 when the scenario's client side ran to its end, 1 with one line on
stderr when it did not (the suite judges the wire either way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BICAMERAL = str(Path(sys.executable).with_name("bicameral"))
NAME = "conf"
#: The Client ID Metadata Document URL bicameral offers where the authorization
#: server supports CIMD (the suite accepts any https URL; it fetches nothing).
CIMD_URL = "https://conformance-test.local/client-metadata.json"
SCENARIO = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
VERSION = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "2025-11-25")
T0 = time.monotonic()


def note(what: str) -> None:
    """A step, timed, on stderr (the suite keeps it with the scenario's results)."""
    sys.stderr.write(f"client.py: {time.monotonic() - T0:6.2f}s {what}\n")
    sys.stderr.flush()


def context() -> dict[str, Any]:
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    if not raw:
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def toml(value: str) -> str:
    return json.dumps(value)


def config(url: str, ctx: dict[str, Any]) -> str:
    lines = [f"[mcp.servers.{NAME}]", f"url = {toml(url)}"]
    # The suite's scenario server speaks the one era it is run at, as its
    # reference clients are told (MCP_CONFORMANCE_PROTOCOL_VERSION).
    lines.append(f"era = {toml('handshake' if VERSION <= '2025-11-25' else 'stateless')}")
    if SCENARIO.startswith("auth/"):
        lines.append('auth = "oauth"')
        if ctx.get("client_id"):
            lines.append(f"client_id = {toml(ctx['client_id'])}")
            if ctx.get("client_secret"):
                lines.append(f"client_secret = {toml(ctx['client_secret'])}")
        else:
            lines.append(f"client_metadata_url = {toml(CIMD_URL)}")
    return "\n".join(lines) + "\n"


class Home:
    """A fresh state directory and the CLI run against it."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="bcc", dir="/tmp"))
        self.path.chmod(0o700)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL")}
        self.env["BICAMERAL_NO_BROWSER"] = "1"

    def argv(self, *args: str) -> list[str]:
        return [BICAMERAL, "--home", str(self.path), *args]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=60, check=False
        )

    def login(self) -> None:
        """`mcp login --no-browser`, its printed URL followed by an HTTP client."""
        import httpx2

        proc = subprocess.Popen(
            self.argv("mcp", "login", NAME, "--no-browser"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert proc.stderr is not None
        seen: list[str] = []
        try:
            for line in proc.stderr:
                seen.append(line)
                if not line.startswith(("http://", "https://")):
                    continue
                with httpx2.Client(timeout=30) as http:
                    answer = http.get(line.strip(), follow_redirects=False)
                    target = answer.headers.get("location")
                    if answer.status_code not in (301, 302, 303, 307, 308) or not target:
                        raise SystemExit(
                            f"the authorization server answered {answer.status_code}, no redirect"
                        )
                    query = parse_qs(urlsplit(target).query)
                    note(f"redirected with {sorted(query)}")
                    http.get(target)
                # A step-up during the login prints another URL: follow each.
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise SystemExit("".join(seen) + err + out)

    def state(self) -> str:
        """The server's state, as `mcp ps` shows it."""
        shown = self.cli("mcp", "ps", "--json")
        rows = json.loads(shown.stdout or "{}").get("servers") or []
        return next((str(r.get("state")) for r in rows if r.get("name") == NAME), "?")

    async def ready(self) -> None:
        """Wait until the daemon has connected to the server again (30 s at most)."""
        import trio

        for _ in range(300):
            if await trio.to_thread.run_sync(self.state) == "ready":
                return
            await trio.sleep(0.1)
        raise SystemExit(f"the server is still {self.state()} after 30 s")

    def stop(self) -> None:
        note("stopping the daemon")
        self.cli("daemon", "stop")
        shutil.rmtree(self.path, ignore_errors=True)
        note("stopped")


def stub_args(schema: dict[str, Any]) -> dict[str, Any]:
    """Minimal arguments for the required properties of `schema`."""
    by_type = {"string": "x", "integer": 0, "number": 0, "boolean": False, "object": {}}
    props = schema.get("properties") or {}
    return {
        key: by_type.get((props.get(key) or {}).get("type"), "x")
        for key in schema.get("required") or []
    }


async def drive(home: Home, ctx: dict[str, Any]) -> None:
    """The scenario's client side, through the bridge ``mcp --server conf``."""
    import trio
    from mcp import StdioServerParameters, types
    from mcp.client.client import Client

    params = StdioServerParameters(
        command=BICAMERAL, args=["--home", str(home.path), "mcp", "--server", NAME], env=home.env
    )
    mode = "legacy" if VERSION <= "2025-11-25" else "auto"

    async def elicit(context: Any, request: Any) -> Any:
        schema = getattr(request, "requested_schema", None) or {}
        content = {
            key: prop["default"]
            for key, prop in (schema.get("properties") or {}).items()
            if isinstance(prop, dict) and "default" in prop
        }
        if SCENARIO == "sep-2322-client-request-state":
            content = {"confirmed": True}
        return types.ElicitResult(action="accept", content=content)

    async def sample(context: Any, request: Any) -> Any:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=""), model="stub"
        )

    async def roots(context: Any) -> Any:
        return types.ListRootsResult(roots=[])

    async with Client(
        params,
        mode=mode,
        elicitation_callback=elicit,
        sampling_callback=sample,
        list_roots_callback=roots,
    ) as client:
        listed = await client.list_tools()
        names = [tool.name for tool in listed.tools]
        if SCENARIO in ("tools_call", "request-metadata", "http-standard-headers"):
            await client.call_tool("add_numbers", {"a": 5, "b": 3})
        elif SCENARIO == "sse-retry":
            await client.call_tool("test_reconnection", {})
        elif SCENARIO == "elicitation-sep1034-client-defaults":
            await client.call_tool("test_client_elicitation_defaults", {})
        elif SCENARIO == "json-schema-2020-12-preservation":
            focal = next(t for t in listed.tools if t.name == "json_schema_2020_12_tool")
            await client.call_tool("json_schema_echo", {"schema": focal.input_schema})
        elif SCENARIO == "sep-2322-client-request-state":
            for tool in (
                "test_mrtr_echo_state",
                "test_mrtr_unrelated",
                "test_mrtr_no_state",
                "test_mrtr_no_result_type",
            ):
                await client.call_tool(tool, {})
        elif SCENARIO == "http-invalid-tool-headers":
            for tool in listed.tools:
                try:
                    await client.call_tool(tool.name, stub_args(tool.input_schema))
                except Exception as exc:
                    sys.stderr.write(f"client.py: {tool.name}: {exc}\n")
        elif SCENARIO == "http-custom-headers":
            for call in ctx.get("toolCalls") or []:
                if call["name"] in names:
                    try:
                        await client.call_tool(call["name"], call.get("arguments") or {})
                    except Exception as exc:
                        sys.stderr.write(f"client.py: {call['name']}: {exc}\n")
        elif SCENARIO.startswith("auth/") and names:
            try:
                await client.call_tool(names[0], {})
            except Exception as exc:
                note(f"{names[0]}: {exc}")
                state = await trio.to_thread.run_sync(home.state)
                note(f"the server is {state}")
                if state != "needs-login":
                    return
                # A step-up: the server wants more scope than was granted; the
                # operator logs in again (here, without a person) and calls again.
                await trio.to_thread.run_sync(home.login)
                await home.ready()
                await client.call_tool(names[0], {})


def main() -> int:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: client.py URL (the suite sets MCP_CONFORMANCE_SCENARIO)\n")
        return 2
    url = sys.argv[1]
    ctx = context()
    # The suite ends a client that overruns with SIGTERM: clean up all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("ended by SIGTERM (the suite's timeout)"))
    home = Home()
    try:
        (home.path / "config.toml").write_text(config(url, ctx))
        if SCENARIO.startswith("auth/"):
            note("logging in")
            home.login()
        note("starting the daemon")
        started = home.cli("daemon", "start")
        if started.returncode != 0:
            raise SystemExit(f"the daemon did not start: {started.stderr.strip()}")
        import trio

        note("driving the scenario")
        trio.run(drive, home, ctx)
        note("done")
    except SystemExit as exc:
        sys.stderr.write(f"client.py: {SCENARIO}: {exc}\n")
        return 1
    except BaseException as exc:
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        sys.stderr.write(f"client.py: {SCENARIO}: {type(leaf).__name__}: {leaf}\n")
        return 1
    finally:
        home.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
