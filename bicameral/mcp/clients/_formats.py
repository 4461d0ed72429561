"""Reading a client's config file and rewriting server entries in it, byte-exact elsewhere.

Two formats: JSON (read as JSONC, since people put comments in them) and
TOML (Codex). A rewrite changes only the entries it is given, and in each
entry only its launch keys (:func:`._dialect.launch_keys`):

- JSON: the text span of each rewritten entry is replaced by a new object
  laid out like the old one (one line or one member per line, the same
  indentation and line endings); the members that stay are copied as they
  were written. Comments inside a rewritten entry go (they are in the
  backup); every byte outside the rewritten entries stays.
- TOML: tomlkit edits the ``[mcp_servers.NAME]`` table in place, so
  comments, order and layout of everything else survive.

Either way the result is parsed again and must mean exactly the old data
with the new entries, or nothing is written (a :class:`ConfigError`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bicameral.daemon import ConfigError
from bicameral.mcp.clients._catalogue import Client
from bicameral.mcp.clients._jsonc import JsoncError, Member, Node, parse

__all__ = ["ClientDocument", "load_document"]

#: A rewrite: server name -> (the new launch keys, in order; the keys to drop).
Rewrites = Mapping[str, tuple[dict[str, Any], frozenset[str]]]

_INLINE_LIMIT = 100
#: After a member: an optional comma, then a ``//`` or one-line ``/* */`` comment.
_AFTER = re.compile(r"[ \t]*,?[ \t]*(//[^\r\n]*|/\*[^\n]*?\*/)?")


class ClientDocument:
    """A parsed client config: its server entries, and rewriting some of them."""

    def __init__(self, client: Client, path: Path, text: str) -> None:
        self.client = client
        self.path = path
        self.text = text

    def entries(self) -> dict[str, Any]:
        """The server entries (name -> plain data); empty when the file has none."""
        raise NotImplementedError

    def rewrite(self, rewrites: Rewrites) -> str:
        """The file's new text with ``rewrites`` applied."""
        raise NotImplementedError

    def _expected(self, data: dict[str, Any], rewrites: Rewrites) -> dict[str, Any]:
        """``data`` with each rewritten entry's launch keys replaced."""
        result = copy.deepcopy(data)
        servers = _at(result, self.client.key)
        for name, (launch, drop) in rewrites.items():
            servers[name] = {
                **launch,
                **{k: v for k, v in servers[name].items() if k not in drop and k not in launch},
            }
        return result

    def _refuse(self) -> ConfigError:
        return ConfigError(
            f"{self.path}: cannot rewrite this file's layout safely (nothing was written); "
            "edit it by hand"
        )


def _at(data: Any, key: tuple[str, ...]) -> Any:
    for part in key:
        data = data.get(part) if isinstance(data, dict) else None
    return data


class _JsonDocument(ClientDocument):
    def __init__(self, client: Client, path: Path, text: str) -> None:
        super().__init__(client, path, text)
        try:
            self.root = parse(text)
        except JsoncError as exc:
            raise ConfigError(
                f"{path}: invalid JSON at line {exc.line}, column {exc.column}: {exc.message} "
                "(the file was left as it is)"
            ) from None
        if self.root.kind != "object":
            raise ConfigError(f"{path}: expected a JSON object (the file was left as it is)")
        self.servers = self._servers()

    def _servers(self) -> Node | None:
        node: Node | None = self.root
        for part in self.client.key:
            node = node.get(part) if node is not None and node.kind == "object" else None
        if node is not None and node.kind != "object":
            raise ConfigError(
                f'{self.path}: "{".".join(self.client.key)}" is not an object '
                "(the file was left as it is)"
            )
        return node

    def entries(self) -> dict[str, Any]:
        return {} if self.servers is None else self.servers.plain() or {}

    def rewrite(self, rewrites: Rewrites) -> str:
        assert self.servers is not None
        text = self.text
        spans = []
        for name, (launch, drop) in rewrites.items():
            node = self.servers.get(name)
            if node is None or node.kind != "object":
                raise self._refuse()
            spans.append((node.start, node.end, self._entry_text(node, launch, drop)))
        for start, end, new in sorted(spans, reverse=True):
            text = text[:start] + new + text[end:]
        try:
            got = parse(text).plain()
        except JsoncError:
            raise self._refuse() from None
        if got != self._expected(self.root.plain(), rewrites):
            raise self._refuse()
        return text

    def _line_indent(self, offset: int) -> str:
        start = self.text.rfind("\n", 0, offset) + 1
        line = self.text[start:offset]
        return line[: len(line) - len(line.lstrip(" \t"))]

    def _trailing(self, member: Member) -> str:
        """A comment after ``member`` on its line (``"a": 1, // why``), or ``""``."""
        match = _AFTER.match(self.text, member.value.end)
        return match.group(1) if match and match.group(1) else ""

    def _entry_text(self, node: Node, launch: dict[str, Any], drop: frozenset[str]) -> str:
        members = [m for m in node.members if m.key not in drop and m.key not in launch]
        kept = [self.text[m.start : m.value.end] for m in members]
        source = self.text[node.start : node.end]
        newline = "\r\n" if "\r\n" in self.text else "\n"
        if "\n" not in source:
            pad = " " if source[1:2] == " " else ""
            parts = [f"{json.dumps(k)}: {_inline(v)}" for k, v in launch.items()] + kept
            return "{" + pad + ", ".join(parts) + pad + "}"
        base = self._line_indent(node.end - 1)
        first = node.members[0].start if node.members else None
        if first is not None and "\n" in self.text[node.start : first]:
            indent = self._line_indent(first)
        else:
            indent = base + ("\t" if "\t" in base else "  ")
        unit = indent[len(base) :] if indent.startswith(base) and indent != base else "  "
        rows = [
            (f"{json.dumps(k)}: {_block(v, indent, unit, newline)}", "") for k, v in launch.items()
        ]
        rows += [(text, self._trailing(m)) for text, m in zip(kept, members, strict=True)]
        # A trailing comma after the last member stays (JSONC allows it).
        last = node.members[-1] if node.members else None
        tail = last is not None and self.text[last.value.end :].lstrip(" \t")[:1] == ","
        lines = []
        for i, (text, comment) in enumerate(rows):
            comma = "," if i < len(rows) - 1 or tail else ""
            lines.append(indent + text + comma + (" " + comment if comment else ""))
        return "{" + newline + newline.join(lines) + newline + base + "}"


def _inline(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _block(value: Any, indent: str, unit: str, newline: str) -> str:
    """``value`` laid out at ``indent``: short lists inline, objects one member per line."""
    flat = _inline(value)
    if isinstance(value, list) and len(flat) + len(indent) <= _INLINE_LIMIT:
        return flat
    if isinstance(value, dict) and value:
        inner = indent + unit
        parts = [
            f"{inner}{json.dumps(k)}: {_block(v, inner, unit, newline)}" for k, v in value.items()
        ]
        return "{" + newline + ("," + newline).join(parts) + newline + indent + "}"
    if isinstance(value, list) and value:
        inner = indent + unit
        parts = [inner + _block(v, inner, unit, newline) for v in value]
        return "[" + newline + ("," + newline).join(parts) + newline + indent + "]"
    return flat


class _TomlDocument(ClientDocument):
    def __init__(self, client: Client, path: Path, text: str) -> None:
        super().__init__(client, path, text)
        import tomllib

        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc} (the file was left as it is)") from None
        servers = _at(self.data, client.key)
        if servers is not None and not isinstance(servers, dict):
            raise ConfigError(
                f'{path}: "{".".join(client.key)}" is not a table (the file was left as it is)'
            )

    def entries(self) -> dict[str, Any]:
        return dict(_at(self.data, self.client.key) or {})

    def rewrite(self, rewrites: Rewrites) -> str:
        import tomllib

        import tomlkit

        try:
            doc = tomlkit.parse(self.text)
            servers: Any = doc
            for part in self.client.key:
                servers = servers[part]
            for name, (launch, drop) in rewrites.items():
                table = servers[name]
                for key in [k for k in table if k in drop and k not in launch]:
                    del table[key]
                for key, value in launch.items():
                    if isinstance(value, dict):
                        inline = tomlkit.inline_table()
                        inline.update(value)
                        table[key] = inline
                    else:
                        table[key] = value
            text = doc.as_string()
            got = tomllib.loads(text)
        except Exception:  # tomlkit's own errors on layouts it cannot edit
            raise self._refuse() from None
        if got != self._expected(self.data, rewrites):
            raise self._refuse()
        return text


def load_document(client: Client, path: Path, data: bytes) -> ClientDocument:
    """``data`` (the bytes of ``client``'s config at ``path``) parsed; a :class:`ConfigError`
    with the path and line when it does not parse."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid UTF-8 ({exc.reason}); the file was left as it is"
        ) from None
    if client.format == "toml":
        return _TomlDocument(client, path, text)
    return _JsonDocument(client, path, text)
