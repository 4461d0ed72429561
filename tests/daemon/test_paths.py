"""Paths: resolution, the private state dir checks, the AF_UNIX fallback."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bicameral.daemon import DaemonError
from bicameral.daemon._paths import (
    check_private_dir,
    effective_socket_path,
    fallback_socket_path,
    resolve_paths,
)
from bicameral.platform import Platform


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcp-"))
    yield path
    os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def test_default_home_is_dot_bicameral_in_the_user_home() -> None:
    paths = resolve_paths(environ={})
    assert paths.home == Path.home() / ".bicameral"
    assert paths.descriptor == paths.home / "daemon.json"
    assert paths.socket == paths.home / "daemon.sock"
    assert paths.lock == paths.home / "daemon.lock"
    assert paths.log == paths.home / "daemon.log"
    assert paths.config == paths.home / "config.toml"
    assert not paths.config_explicit


def test_env_overrides_default_and_option_overrides_env() -> None:
    assert resolve_paths(environ={"BICAMERAL_HOME": "/x/env"}).home == Path("/x/env")
    assert resolve_paths("/x/opt", environ={"BICAMERAL_HOME": "/x/env"}).home == Path("/x/opt")
    with pytest.raises(DaemonError, match="BICAMERAL_HOME is set but empty"):
        resolve_paths(environ={"BICAMERAL_HOME": ""})
    with pytest.raises(DaemonError, match='--home "" is empty'):
        resolve_paths("", environ={})


def test_relative_paths_are_made_absolute() -> None:
    paths = resolve_paths("rel", environ={})
    assert paths.home == Path.cwd() / "rel"


def test_a_custom_descriptor_gets_its_own_lock_socket_and_log() -> None:
    paths = resolve_paths("/h", descriptor="/d/other.json", environ={})
    assert paths.lock == Path("/d/other.json.lock")
    assert paths.socket == Path("/d/other.sock")
    assert paths.log == Path("/d/other.log")
    assert paths.private_dirs() == [Path("/h"), Path("/d")]
    odd = resolve_paths("/h", descriptor="/d/desc", socket="/s/x.sock", environ={})
    assert odd.lock == Path("/d/desc.lock")
    assert odd.socket == Path("/s/x.sock")
    assert odd.log == Path("/d/desc.log")


def test_a_missing_state_dir_is_created_0700(tmp: Path) -> None:
    target = tmp / "a" / "b"
    old = os.umask(0)
    try:
        check_private_dir(target)
    finally:
        os.umask(old)
    assert target.is_dir()
    assert target.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o720, 0o702, 0o777])
def test_a_dir_writable_by_group_or_others_is_refused(tmp: Path, mode: int) -> None:
    os.chmod(tmp, mode)
    with pytest.raises(DaemonError, match="writable by group or others"):
        check_private_dir(tmp)


def test_a_readable_but_not_writable_dir_is_accepted(tmp: Path) -> None:
    os.chmod(tmp, 0o755)
    check_private_dir(tmp)


def test_a_file_is_refused(tmp: Path) -> None:
    (tmp / "f").write_text("")
    with pytest.raises(DaemonError, match="not a directory"):
        check_private_dir(tmp / "f")
    with pytest.raises(DaemonError, match="not a directory"):
        check_private_dir(tmp / "f" / "sub")


def test_a_dir_owned_by_someone_else_is_refused(tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(tmp, 12345, -1)
    with pytest.raises(DaemonError, match="owned by uid 12345"):
        check_private_dir(tmp)


def test_missing_dir_without_create_is_an_error(tmp: Path) -> None:
    with pytest.raises(DaemonError, match="does not exist"):
        check_private_dir(tmp / "nope", create=False)


def test_short_socket_paths_are_used_as_is() -> None:
    short = Path("/tmp/x/daemon.sock")
    assert effective_socket_path(short, platform=Platform.LINUX) == short


def test_fallback_is_short_stable_and_per_request() -> None:
    long_a = Path("/" + "a" * 200 + "/daemon.sock")
    long_b = Path("/" + "b" * 200 + "/daemon.sock")
    fa = fallback_socket_path(long_a, runtime_dir=None, uid=1000, platform=Platform.LINUX)
    assert fa == fallback_socket_path(long_a, runtime_dir=None, uid=1000, platform=Platform.LINUX)
    assert fa != fallback_socket_path(long_b, runtime_dir=None, uid=1000, platform=Platform.LINUX)
    assert fa.parent == Path("/tmp/bicameral-1000")
    assert len(os.fsencode(fa)) <= 103
    xdg = fallback_socket_path(
        long_a, runtime_dir="/run/user/1000", uid=1000, platform=Platform.LINUX
    )
    assert xdg.parent == Path("/run/user/1000/bicameral")
    silly = fallback_socket_path(
        long_a, runtime_dir="/" + "r" * 150, uid=7, platform=Platform.LINUX
    )
    assert silly.parent == Path("/tmp/bicameral-7")


def test_effective_socket_path_uses_and_checks_the_runtime_dir(tmp: Path) -> None:
    long_path = tmp / ("x" * 120) / "daemon.sock"
    env = {"XDG_RUNTIME_DIR": str(tmp)}
    chosen = effective_socket_path(long_path, platform=Platform.LINUX, environ=env)
    assert chosen.parent == tmp / "bicameral"
    assert (tmp / "bicameral").stat().st_mode & 0o777 == 0o700
    os.chmod(tmp / "bicameral", 0o777)
    with pytest.raises(DaemonError, match="socket directory"):
        effective_socket_path(long_path, platform=Platform.LINUX, environ=env)


def test_the_limit_is_107_on_linux_and_103_on_macos() -> None:
    path_104 = Path("/" + "p" * 96 + "/d.sock")  # 104 bytes
    assert len(os.fsencode(path_104)) == 104
    assert effective_socket_path(path_104, platform=Platform.LINUX) == path_104
    assert effective_socket_path(path_104, platform=Platform.WINDOWS) == path_104  # no AF_UNIX: TCP
