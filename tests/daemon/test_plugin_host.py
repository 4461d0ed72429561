"""The plugin host: entry point discovery, config loading, validation errors."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bicameral.daemon import ConfigError
from bicameral.daemon._paths import resolve_paths
from bicameral.daemon._plugin import (
    EntryPoint,
    _importlib_entry_points,
    find_entry_points,
    load_config_file,
    load_plugins,
)


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_dist(site: Path, name: str, entry_points: str) -> None:
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n")
    (dist / "entry_points.txt").write_text(entry_points)


def test_the_fast_scan_agrees_with_importlib_metadata(tmp: Path) -> None:
    for group in ("console_scripts", "pytest11", "bicameral.plugins"):
        fast = sorted((e.name, e.value) for e in find_entry_points(group))
        slow = sorted((e.name, e.value) for e in _importlib_entry_points(group))
        assert fast == slow, group


def test_the_first_distribution_of_a_name_wins(tmp: Path) -> None:
    make_dist(tmp / "a", "pkg", "[bicameral.plugins]\nx = first:plugin\n")
    make_dist(tmp / "b", "pkg", "[bicameral.plugins]\nx = second:plugin\n")
    make_dist(tmp / "b", "other", "[other]\ny = z:w\n[bicameral.plugins]\n# c\nz = third:p\n")
    found = find_entry_points(path=[str(tmp / "a"), str(tmp / "b")])
    assert [(e.name, e.value) for e in found] == [("x", "first:plugin"), ("z", "third:p")]


def test_no_config_file_is_an_empty_config(tmp: Path) -> None:
    assert load_config_file(resolve_paths(tmp)) == ({}, None)


def test_a_missing_explicit_config_is_an_error(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(resolve_paths(tmp, config=tmp / "nope.toml"))


def test_invalid_toml_names_the_file(tmp: Path) -> None:
    (tmp / "config.toml").write_text("a = \n")
    with pytest.raises(ConfigError, match=r"config\.toml is not valid TOML"):
        load_config_file(resolve_paths(tmp))


def test_valid_toml_is_returned_with_its_path(tmp: Path) -> None:
    (tmp / "config.toml").write_text("[mcp.servers.x]\ncommand = 'x'\n")
    data, path = load_config_file(resolve_paths(tmp))
    assert data == {"mcp": {"servers": {"x": {"command": "x"}}}}
    assert path == tmp / "config.toml"


def test_a_plugin_that_does_not_import_fails_with_its_name() -> None:
    ep = EntryPoint("ghost", "no_such_module_anywhere:plugin", "ghost-dist")
    with pytest.raises(ConfigError, match=r"plugin .ghost..*failed to load"):
        load_plugins({}, None, entry_points=[ep])


def test_an_object_that_is_not_a_plugin_is_refused() -> None:
    ep = EntryPoint("os", "os:path", "x")
    with pytest.raises(ConfigError, match="not a DaemonPlugin"):
        load_plugins({}, None, entry_points=[ep])


def test_no_plugins_means_no_adapters() -> None:
    loaded = load_plugins({"daemon": {}}, None, entry_points=[])
    assert loaded.adapter_specs() == []


def test_a_table_no_plugin_claims_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown table or key 'anything' at the top level"):
        load_plugins({"anything": 1}, None, entry_points=[])
