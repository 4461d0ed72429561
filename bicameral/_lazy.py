"""Lazy public names for a package's ``__init__``: each name written once.

A package lists what it exports as ordinary imports under
``if TYPE_CHECKING:`` (so type checkers and readers see where each name
comes from) and hands itself to `lazy_exports`::

    if TYPE_CHECKING:
        from bicameral.protocol._peer import Peer, PeerHandler

    __all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

At run time those imports are not executed: `lazy_exports` reads them from
the package's source and imports a name's module on first use (PEP 562),
so importing the package pays for nothing it does not use (the CLI's fast
paths must not load Trio or the MCP SDK). Names the package defines or
imports eagerly itself go in ``eager``, to be listed in ``__all__`` too.

Standard library only, and only ``re``, which ``json`` loads anyway.
"""

from __future__ import annotations

import importlib
import re
import sys

TYPE_CHECKING = False  # not `typing`'s: importing typing costs the fast paths
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["lazy_exports"]

_BLOCK = re.compile(r"^if TYPE_CHECKING:\n((?:[ \t]+.*\n|\n)+)", re.MULTILINE)
_IMPORT = re.compile(r"^[ \t]+from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE)


def _exports(source: str, package: str) -> dict[str, str]:
    """Each name imported under ``if TYPE_CHECKING:`` from one of ``package``'s modules -> it."""
    names: dict[str, str] = {}
    for block in _BLOCK.findall(source):
        for module, imported in _IMPORT.findall(block):
            if not module.startswith(package + "."):
                continue  # a typing-only import (collections.abc, typing...)
            for item in imported.strip("()").split(","):
                name = item.split("#", 1)[0].strip()
                if name:
                    names[name] = module
    return names


def lazy_exports(
    package: str, file: str, eager: Iterable[str] = ()
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for the package ``package`` (its ``__file__``).

    Raises `ImportError` when the package's source cannot be read, or lists
    nothing to export: a package that exports lazily must ship its source.
    """
    try:
        with open(file, encoding="utf-8") as f:
            source = f.read()
    except OSError as exc:
        raise ImportError(f"cannot read the exports of {package}: {exc}") from None
    lazy = _exports(source, package)
    if not lazy:
        raise ImportError(f"{package} lists no exports under `if TYPE_CHECKING:`")
    public = sorted({*lazy, *eager})

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return list(public)

    return public, __getattr__, __dir__
