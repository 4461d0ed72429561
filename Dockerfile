# bicameral as a container: `bicameral daemon serve` with the HTTP listener on,
# supervised by the platform (docs/hosting.md).
#
#   docker build -t bicameral .                        # on python:3.12-slim
#   docker build --build-arg BASE=my/debian-python .   # any Debian-like base with python3 (>= 3.11)
#
# At run time:
#   /etc/bicameral/config.toml   the configuration (mount it; [daemon.http] must listen
#                                on 0.0.0.0:8765 with allow_remote = true)
#   the listener's token         $BICAMERAL_HTTP_TOKEN, or a mounted secret file named
#                                by [daemon.http] token_file
#   $BICAMERAL_HOME              the daemon's state dir, /dev/shm/bicameral: the only
#                                place a read-only root filesystem leaves writable with
#                                the sticky bit the daemon's path checks accept
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# The dependencies first, from pyproject.toml alone: a layer that a change
# of bicameral's sources does not invalidate.
COPY pyproject.toml /src/
RUN python3 -m venv /opt/bicameral \
 && python3 -c 'import subprocess, tomllib; \
project = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; \
subprocess.check_call(["/opt/bicameral/bin/pip", "install", "--no-cache-dir", \
    "--disable-pip-version-check", "setuptools>=68", *project["dependencies"], \
    *project["optional-dependencies"]["store"]])'
COPY README.md /src/
COPY bicameral /src/bicameral
RUN /opt/bicameral/bin/pip install --no-cache-dir --disable-pip-version-check \
      --no-deps --no-build-isolation /src \
 && /opt/bicameral/bin/pip uninstall -y setuptools pip

FROM ${BASE}
# tini as PID 1: it forwards SIGTERM to the daemon (whose drain then runs) and
# reaps any orphan an MCP server leaves behind, which a plain PID 1 would not.
RUN if ! command -v tini >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends tini \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin bicameral \
 && mkdir -p /etc/bicameral
COPY --from=build /opt/bicameral /opt/bicameral
ENV PATH=/opt/bicameral/bin:$PATH \
    BICAMERAL_HOME=/dev/shm/bicameral \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8765
ENTRYPOINT ["tini", "--", "bicameral", "daemon", "serve"]
CMD ["--config", "/etc/bicameral/config.toml", "--log-format", "json"]
