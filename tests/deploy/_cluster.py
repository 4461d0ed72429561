"""Three bicameral replicas behind nginx, sharing a real Redis: the hosted front, locally.

Each replica is a real daemon (its own state directory, ``daemon start``)
listening on its own loopback port, with the same token file, the same
servers, ``session_id_header = "X-Request-ID"`` and the shared store.
nginx (Debian's package) is the ingress: it hashes a request on its
``Mcp-Session-Id``, or on its request id when it has none (a new session
takes that id, so its later requests come back; a stateless-era request
lands anywhere), exactly as docs/hosting.md tells an operator to do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil

from tests._redis import RedisServer
from tests.mcp.conftest import McpHome
from tests.mcp.test_remote import free_port

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
user root root;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_mcp_session_id $mcp_affinity {{
        ""      $request_id;
        default $http_mcp_session_id;
    }}
    upstream bicameral {{
        hash $mcp_affinity consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bicameral;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-ID $request_id;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


class Replica:
    """One daemon of the cluster: its home, port and process."""

    def __init__(self, index: int, port: int) -> None:
        self.index = index
        self.port = port
        self.home = McpHome()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        done = self.home.cli("daemon", "start")
        assert done.returncode == 0, done.stderr

    def pid(self) -> int:
        return self.home.daemon_pid()

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes stops a pod; returns once the daemon has exited."""
        process = psutil.Process(self.pid())
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL: the daemon dies at once (its reaper ends its servers)."""
        process = psutil.Process(self.pid())
        process.kill()
        process.wait(timeout=30)

    def ready(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/readyz", timeout=2).text.startswith("ready")
        except httpx2.TransportError:
            return False


class Cluster:
    """Redis, three replicas and nginx in front of them."""

    def __init__(self, servers: dict[str, dict[str, Any]], replicas: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bcm-cluster-"))
        self.token = os.urandom(32).hex()
        self.token_file = self.dir / "token"
        self.token_file.write_text(self.token + "\n")
        self.token_file.chmod(0o600)
        self.redis = RedisServer()
        self.port = free_port()
        self.replicas = [Replica(i, free_port()) for i in range(replicas)]
        self.servers = servers
        self.nginx: subprocess.Popen[bytes] | None = None
        #: Replicas nginx sends requests to: as a Service's endpoints, the
        #: ready pods that are not terminating (`take_out`, `put_back`).
        self.in_rotation = {r.index for r in self.replicas}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self) -> None:
        self.redis.start()
        for replica in self.replicas:
            daemon = (
                "[daemon.http]\n"
                f'listen = "127.0.0.1:{replica.port}"\n'
                f'token_file = "{self.token_file}"\n'
                'session_id_header = "X-Request-ID"\n'
                f'allowed_hosts = ["127.0.0.1:{self.port}"]\n'
                "[daemon.store]\n"
                f'url = "{self.redis.url}"\n'
                "lock_timeout = 5\n"
            )
            servers = {
                name: (table(replica.home) if callable(table) else table)
                for name, table in self.servers.items()
            }
            replica.home.configure(servers, daemon)
            replica.start()
        self._start_nginx()
        for replica in self.replicas:
            _wait(replica.ready, f"replica {replica.index} ready")

    def _write_conf(self) -> Path:
        servers = "\n".join(
            f"        server 127.0.0.1:{r.port} max_fails=1 fail_timeout=2s"
            + ("" if r.index in self.in_rotation else " down")
            + ";"
            for r in self.replicas
        )
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir, servers=servers, port=self.port))
        return conf

    def _start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        assert os.path.exists(nginx), "the replica tests need nginx: apt-get install nginx-light"
        conf = self._write_conf()
        self.nginx = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                httpx2.get(f"{self.url}/healthz", timeout=2)
            except httpx2.TransportError:
                return False
            return True

        _wait(answers, "nginx answering")

    def take_out(self, index: int) -> None:
        """Stop sending `index` new requests (a terminating or unready pod leaves the endpoints)."""
        self.in_rotation.discard(index)
        self._reload()

    def put_back(self, index: int) -> None:
        """Send `index` requests again (its ``/readyz`` said ready)."""
        self.in_rotation.add(index)
        self._reload()

    def _reload(self) -> None:
        """Apply the rotation: nginx starts new workers with it; the old ones finish."""
        assert self.nginx is not None
        self._write_conf()
        master = psutil.Process(self.nginx.pid)
        old = {p.pid for p in master.children()}
        self.nginx.send_signal(signal.SIGHUP)
        _wait(lambda: any(p.pid not in old for p in master.children()), "nginx reloaded")

    def stop(self) -> list[str]:
        problems: list[str] = []
        if self.nginx is not None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        for replica in self.replicas:
            problems += replica.home.teardown()
        self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.redis.dir, ignore_errors=True)
        return problems

    def redis_record(self, key: str) -> dict[str, Any]:
        raw = self.redis.client().get(key)  # type: ignore[attr-defined]
        return json.loads(raw) if raw else {}


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
