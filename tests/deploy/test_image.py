"""The Dockerfile: built on a base made from Debian packages, run as a platform would.

One container, as Kubernetes runs it (docs/hosting.md): read-only root
filesystem, the config and the token mounted read-only (the token file
readable by all, as a Secret's is by default), the host's network. It must
become ready, serve an official-SDK client through ``/mcp`` in both eras,
run as a non-root user under tini, and on SIGTERM drain a call in flight and
exit 0 promptly: the signal reached the daemon.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.deploy._docker import base_image, build_image, docker, running_dockerd
from tests.mcp._support import TESTSERVER, text

IMAGE = "bicameral:test"
DRAIN = 5.0
"""Seconds the listener lets requests in flight finish (docs/http.md, the drain)."""


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    with running_dockerd():
        t0 = time.monotonic()
        base = base_image()
        t1 = time.monotonic()
        build_image(IMAGE, base)
        t2 = time.monotonic()
        sys.stderr.write(f"\ndeploy: base image {t1 - t0:.1f} s, image build {t2 - t1:.1f} s\n")
        yield IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Container:
    """One running container of the image, with its mounted config and token."""

    def __init__(self, image: str, tmp: Path) -> None:
        self.port = _free_port()
        self.token = os.urandom(32).hex()
        self.name = f"bcm-{uuid.uuid4().hex[:12]}"
        config = tmp / "config.toml"
        config.write_text(
            "[daemon.http]\n"
            f'listen = "127.0.0.1:{self.port}"\n'
            "allow_remote = true\n"
            'token_file = "/run/secrets/bicameral/token"\n'
            "[mcp.servers.alpha]\n"
            'command = "python3"\n'
            'args = ["/srv/testserver.py", "--name", "alpha"]\n'
        )
        secret = tmp / "token"
        secret.write_text(self.token + "\n")
        for path in (config, secret):
            path.chmod(0o644)  # as a ConfigMap's and a Secret's files are by default
        self.argv = [
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            "--read-only",
            "--volume",
            f"{config}:/etc/bicameral/config.toml:ro",
            "--volume",
            f"{secret}:/run/secrets/bicameral/token:ro",
            "--volume",
            f"{TESTSERVER}:/srv/testserver.py:ro",
            image,
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        docker(*self.argv, timeout=600)

    def state(self) -> dict[str, Any]:
        out = docker("inspect", "--format", "{{json .State}}", self.name).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False)


async def _until_ready(box: Container) -> None:
    async with httpx2.AsyncClient(timeout=5) as http:
        with trio.fail_after(120):
            while True:
                state = await trio.to_thread.run_sync(box.state)
                assert state["Running"], f"the container exited:\n{box.logs()}"
                try:
                    answer = await http.get(f"{box.url}/readyz")
                except httpx2.TransportError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    return
                await trio.sleep(0.2)


# A first build on a fresh machine installs every dependency from PyPI; on
# vfs, every layer is a full copy of the image. Later runs reuse the layers.
@pytest.mark.timeout(3600)
async def test_the_image_serves_mcp_and_drains_on_sigterm(image: str, tmp_path: Path) -> None:
    box = Container(image, tmp_path)
    await trio.to_thread.run_sync(box.start)
    try:
        await _until_ready(box)
        # Non-root, under tini, with the daemon as tini's child.
        top = await trio.to_thread.run_sync(docker, "top", box.name, "-o", "uid,pid,ppid,args")
        rows = [line.split(None, 3) for line in top.stdout.splitlines()[1:]]
        assert rows and all(row[0] == "10001" for row in rows), top.stdout
        assert rows[0][3].startswith("tini -- bicameral daemon serve"), top.stdout
        written = await trio.to_thread.run_sync(
            functools.partial(docker, check=False), "exec", box.name, "touch", "/opt/x"
        )
        assert written.returncode != 0 and "Read-only file system" in written.stderr

        headers = {"Authorization": f"Bearer {box.token}"}
        async with httpx2.AsyncClient(timeout=30) as http:
            refused = await http.post(f"{box.url}/mcp", json={}, headers={"Accept": "*/*"})
            assert refused.status_code == 401
        for mode, era in (("legacy", "2025-11-25"), ("auto", "2026-07-28")):
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(f"{box.url}/mcp", http_client=http), mode=mode) as c,
            ):
                assert c.protocol_version == era
                answer = await c.call_tool("alpha__echo", {"text": f"from a container, {mode}"})
                assert text(answer) == f"from a container, {mode}"

        # SIGTERM (what `docker stop` and Kubernetes send) with a call in flight.
        progressed = trio.Event()
        result: dict[str, str] = {}

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            progressed.set()

        async def call(c: Client) -> None:
            await c.list_tools()
            answer = await c.call_tool(
                "alpha__slow", {"steps": 4, "delay": 0.25}, progress_callback=on_progress
            )
            result["text"] = text(answer)

        # The client's goodbye at the end finds the daemon gone: only the answer counts.
        with contextlib.suppress(Exception):
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(
                    streamable_http_client(
                        f"{box.url}/mcp", http_client=http, terminate_on_close=False
                    ),
                    mode="legacy",
                ) as c,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(call, c)
                await progressed.wait()
                await trio.to_thread.run_sync(docker, "kill", "--signal", "TERM", box.name)
        assert result.get("text") == "done after 4 steps", box.logs()
        waited = await trio.to_thread.run_sync(
            functools.partial(docker, timeout=120), "wait", box.name
        )
        assert waited.stdout.strip() == "0", box.logs()
        logs = box.logs()
        assert "Traceback" not in logs, logs
        # How long the daemon took, by its own clock: from the signal to its exit.
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        began = next(e["ts"] for e in lines if "SIGTERM" in e["message"])
        ended = next(e["ts"] for e in lines if e["message"].endswith(" exited"))
        took = (datetime.fromisoformat(ended) - datetime.fromisoformat(began)).total_seconds()
        sys.stderr.write(f"deploy: the daemon exited {took:.2f} s after SIGTERM\n")
        assert took < DRAIN + 2, logs
    finally:
        await trio.to_thread.run_sync(box.remove)
