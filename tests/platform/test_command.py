"""Commands resolved as the OS runs them: Windows' PATH and PATHEXT, ``.cmd``, ``.ps1``."""

from __future__ import annotations

import ntpath
from collections.abc import Callable

import pytest

from bicameral.platform import CommandError, Platform, resolve_command

W = Platform.WINDOWS
NODE = r"C:\Program Files\nodejs"
NPM = r"C:\Users\u\AppData\Roaming\npm"
ENV = {"PATH": f"{NPM};{NODE};C:\\Windows\\system32", "PATHEXT": ".COM;.EXE;.BAT;.CMD"}


def files(*paths: str) -> Callable[[str], bool]:
    """A fake file system holding exactly `paths` (Windows compares without case)."""
    present = {p.lower() for p in paths}
    return lambda path: ntpath.normpath(path).lower() in present


def test_posix_leaves_the_command_to_execvp() -> None:
    for platform in (Platform.LINUX, Platform.MACOS):
        assert resolve_command(["npx", "-y", "x"], platform=platform) == ["npx", "-y", "x"]


def test_npx_is_npx_cmd_found_through_path_and_pathext() -> None:
    # npm installs npx (a shell script), npx.cmd and npx.ps1 side by side:
    # CreateProcess cannot run "npx"; cmd.exe would pick npx.cmd.
    fs = files(f"{NODE}\\npx", f"{NODE}\\npx.cmd", f"{NODE}\\npx.ps1")
    argv = resolve_command(["npx", "-y", "@scope/server"], platform=W, environ=ENV, is_file=fs)
    assert argv == [f"{NODE}\\npx.cmd", "-y", "@scope/server"]


def test_path_order_wins_then_pathext_order() -> None:
    fs = files(f"{NPM}\\tool.cmd", f"{NODE}\\tool.exe", f"{NPM}\\tool.bat")
    # First PATH directory with any match; within it, PATHEXT's order (.BAT before .CMD).
    assert resolve_command(["tool"], platform=W, environ=ENV, is_file=fs)[0] == f"{NPM}\\tool.bat"
    exe_first = {**ENV, "PATHEXT": ".EXE;.CMD;.BAT"}
    assert resolve_command(["tool"], platform=W, environ=exe_first, is_file=fs)[0] == (
        f"{NPM}\\tool.cmd"
    )


def test_env_names_are_matched_without_case_as_windows_does() -> None:
    env = {"Path": NODE, "PathExt": ".EXE"}
    fs = files(f"{NODE}\\node.exe")
    assert resolve_command(["node"], platform=W, environ=env, is_file=fs) == [f"{NODE}\\node.exe"]


def test_without_pathext_the_documented_default_applies() -> None:
    fs = files(f"{NODE}\\uvx.exe")
    assert resolve_command(["uvx"], platform=W, environ={"PATH": NODE}, is_file=fs) == [
        f"{NODE}\\uvx.exe"
    ]


def test_a_path_keeps_its_extension_or_gets_pathexts() -> None:
    fs = files(r"C:\tools\srv.exe", r"C:\tools\run.cmd")
    assert resolve_command([r"C:\tools\srv.exe"], platform=W, environ=ENV, is_file=fs) == [
        r"C:\tools\srv.exe"
    ]
    assert resolve_command([r"C:\tools\run"], platform=W, environ=ENV, is_file=fs) == [
        r"C:\tools\run.cmd"
    ]


def test_powershell_scripts_are_refused_with_the_command_that_runs_one() -> None:
    fs = files(f"{NPM}\\only.ps1", f"{NPM}\\explicit.ps1")
    with pytest.raises(CommandError) as given:
        resolve_command(["explicit.ps1"], platform=W, environ=ENV, is_file=fs)
    message = str(given.value)
    assert "PowerShell script" in message and '"powershell"' in message and "-File" in message
    # Not in PATHEXT, so only found when asked for by name; said all the same.
    with pytest.raises(CommandError, match="PowerShell script"):
        resolve_command(["only"], platform=W, environ=ENV, is_file=fs)


def test_a_missing_command_says_what_was_tried() -> None:
    with pytest.raises(CommandError) as given:
        resolve_command(["nope"], platform=W, environ=ENV, is_file=files())
    assert "'nope' is not found on PATH" in str(given.value)
    assert ".COM;.EXE;.BAT;.CMD" in str(given.value)


@pytest.mark.parametrize("arg", ['a"b', "100%", "hi!", "two\nlines"])
def test_a_batch_file_refuses_arguments_cmd_exe_would_misread(arg: str) -> None:
    fs = files(f"{NODE}\\npx.cmd")
    with pytest.raises(CommandError, match="batch file"):
        resolve_command(["npx", arg], platform=W, environ=ENV, is_file=fs)
    # The same argument is fine for a real program.
    exe = files(f"{NODE}\\npx.exe")
    assert resolve_command(["npx", arg], platform=W, environ=ENV, is_file=exe)[1] == arg


def test_an_empty_command_is_an_error() -> None:
    with pytest.raises(CommandError):
        resolve_command([], platform=W)
