"""Fetch the tools of real MCP servers once, for ``bench/search.py`` to run offline.

``python bench/search_fetch.py [--npm DIR] [--py DIR]`` runs each server of
`SERVERS` with the official SDK client over stdio, lists its tools (every
page) and writes them to ``bench/search_catalog.json`` with the package
versions. The servers come from the registries:

    npm install --prefix DIR @modelcontextprotocol/server-everything \\
        @modelcontextprotocol/server-filesystem @modelcontextprotocol/server-memory
    python -m venv DIR && DIR/bin/pip install mcp-server-git mcp-server-time

The bench itself never runs them: what it measures (search quality and
speed, list sizes) depends on the tools' names, descriptions and schemas,
which the catalog holds as the servers sent them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

# Run as a script, this file's directory is sys.path[0], and bench/mcp.py
# would shadow the SDK's `mcp`: the repository root goes there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

CATALOG = Path(__file__).with_name("search_catalog.json")

#: name -> (registry, package, how to run it given the install dirs).
SERVERS: dict[str, tuple[str, str, list[str]]] = {
    "everything": (
        "npm",
        "@modelcontextprotocol/server-everything",
        ["{npm}/mcp-server-everything"],
    ),
    "filesystem": (
        "npm",
        "@modelcontextprotocol/server-filesystem",
        ["{npm}/mcp-server-filesystem", "{tmp}"],
    ),
    "memory": ("npm", "@modelcontextprotocol/server-memory", ["{npm}/mcp-server-memory"]),
    "git": ("pypi", "mcp-server-git", ["{py}/mcp-server-git", "--repository", "{tmp}"]),
    "time": ("pypi", "mcp-server-time", ["{py}/mcp-server-time"]),
}


async def _tools(argv: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=argv[0], args=argv[1:])
    async with Client(params, mode="legacy") as client:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += [
                t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools
            ]
            cursor = page.next_cursor
            if not cursor:
                break
        info = client.server_info.model_dump(mode="json") if client.server_info else {}
        return tools, info


def _version(registry: str, package: str, npm: str, py: str) -> str:
    if registry == "npm":
        manifest = (
            Path(npm).parent / "@modelcontextprotocol" / package.split("/")[1] / "package.json"
        )
        return str(json.loads(manifest.read_text())["version"])
    out = subprocess.run(
        [f"{py}/pip", "show", package], capture_output=True, text=True, check=True
    ).stdout
    return next(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version")
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npm", default="/tmp/mcpcat/npm/node_modules/.bin")
    parser.add_argument("--py", default="/tmp/mcpcat/py/bin")
    args = parser.parse_args()
    catalog: dict[str, Any] = {"servers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True)  # noqa: ASYNC221 (set-up)
        for name, (registry, package, argv) in SERVERS.items():
            command = [a.format(npm=args.npm, py=args.py, tmp=tmp) for a in argv]
            tools, info = await _tools(command)
            catalog["servers"][name] = {
                "registry": registry,
                "package": package,
                "version": _version(registry, package, args.npm, args.py),
                "server_info": info,
                "tools": tools,
            }
            print(f"{name}: {len(tools)} tools", file=sys.stderr)
    CATALOG.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
