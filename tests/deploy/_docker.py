"""Docker for the deployment tests: a daemon we start when none runs, and a base image.

No registry is reachable from the machines these tests run on, so nothing is
pulled: the base image is a minimal Debian bookworm with ``python3``,
``python3-venv`` and ``tini``, made with ``debootstrap`` from Debian's own
archive and imported (``docker import``), and passed to the Dockerfile as
``BASE``. It is cached twice: as the image (dockerd's data root outlives a
run) and as a tarball under ``~/.cache/bicameral/deploy`` (so a wiped data
root costs an import, not a debootstrap).

The dockerd we start runs as it can on a machine without a bridge or
iptables: ``--iptables=false --bridge=none``, the overlay2 storage driver
where the kernel allows it, else vfs; its containers use the host's network
(``--network host``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BASE_IMAGE = "bicameral-test-base:bookworm"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bicameral" / "deploy"
PACKAGES = ("docker.io", "debootstrap")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The data roots of the dockerd these tests start, one per storage driver.
DATA_ROOT = Path("/var/lib/bicameral-test-docker")


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; a failure raises with its stderr."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return docker("info", timeout=30, check=False).returncode == 0


def _install() -> None:
    """Debian's dockerd and debootstrap, when either is missing (needs root)."""
    if shutil.which("dockerd") and shutil.which("debootstrap") and shutil.which("docker"):
        return
    if os.geteuid() != 0:
        raise AssertionError(
            f"the deployment tests need {' and '.join(PACKAGES)}: apt-get install -y "
            + " ".join(PACKAGES)
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


@contextlib.contextmanager
def running_dockerd() -> Iterator[None]:
    """A docker daemon for the duration: the one that runs, else one we start and stop.

    Ours tries the overlay2 storage driver first (a container costs seconds)
    and falls back to vfs (every layer a full copy: minutes), each with its
    own data root under `DATA_ROOT`, kept between runs as the build cache.
    """
    if _answers():
        yield
        return
    _install()
    state = Path(tempfile.mkdtemp(prefix="bcm-dockerd-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for driver in ("overlay2", "vfs"):
            proc = _start_dockerd(driver, state)
            if proc is not None:
                break
        if proc is None:
            log = (state / "dockerd.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"dockerd did not start with overlay2 nor vfs:\n{log}")
        yield
    finally:
        if proc is not None:
            # dockerd stops its containers and its own containerd on SIGTERM.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def _start_dockerd(driver: str, state: Path) -> subprocess.Popen[bytes] | None:
    """dockerd with `driver`, answering; None (and nothing left running) if it cannot."""
    root = DATA_ROOT / driver
    root.mkdir(parents=True, exist_ok=True)
    with (state / "dockerd.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                "dockerd",
                "--storage-driver",
                driver,
                "--data-root",
                str(root),
                "--iptables=false",
                "--bridge=none",
                "--pidfile",
                str(state / "dockerd.pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while not _answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
            return None
        time.sleep(0.2)
    # The driver it runs with is the one asked for (not one found in its data root).
    probe = docker("info", "--format", "{{.Driver}}", check=False).stdout.strip()
    if probe != driver:
        proc.terminate()
        proc.wait(timeout=30)
        return None
    return proc


def base_image() -> str:
    """The Debian base image (cached as an image and as a tarball); its name."""
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    tarball = CACHE / "bookworm-python3.tar"
    if not tarball.exists():
        _debootstrap(tarball)
    with tarball.open("rb") as f:
        done = subprocess.run(
            ["docker", "import", "-", BASE_IMAGE],
            stdin=f,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise AssertionError(f"docker import failed: {done.stderr.strip()}")
    return BASE_IMAGE


def _debootstrap(tarball: Path) -> None:
    """A minimal bookworm root with python3, python3-venv and tini, as a tarball."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bcm-root-") as tmp:
        root = Path(tmp) / "root"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,tini,ca-certificates",
                "bookworm",
                str(root),
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"debootstrap failed: {done.stdout[-2000:]}{done.stderr}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        # The image's build installs from PyPI through this machine's network:
        # a TLS-inspecting proxy's CA must be trusted inside it too, by pip
        # (which otherwise trusts only its own bundle) as by everything else.
        host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_bundle.exists():
            shutil.copyfile(host_bundle, root / "etc/ssl/certs/ca-certificates.crt")
            (root / "etc/pip.conf").write_text(
                "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
            )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.replace(tarball)


def build_image(tag: str, base: str) -> None:
    """``docker build`` of the project's Dockerfile on `base`; the image it replaces goes.

    Under the vfs storage driver every image is a full copy of its root:
    the previous build of `tag`, left dangling by this one, is removed.
    """
    before = docker("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    done = subprocess.run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE={base}",
            "--tag",
            tag,
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"docker build failed:\n{done.stdout[-4000:]}\n{done.stderr}")
    after = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if before and before != after:
        docker("image", "rm", before, check=False)
