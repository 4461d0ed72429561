"""A small JSONC reader that keeps where every value is in the text.

VS Code's ``mcp.json``, Gemini CLI's ``settings.json`` and, in practice,
every client config a person edits may hold ``//`` and ``/* */`` comments
and trailing commas, which :mod:`json` refuses. ``bicameral client setup``
must change one server entry and leave every other byte as it was, so it
does not re-serialise a file: it parses it here into :class:`Node` values
that carry their ``start`` / ``end`` offsets, and replaces exactly the text
of the entries it rewrites.

The grammar is JSON's, plus comments, trailing commas in objects and
arrays, and a leading byte order mark. Duplicate keys keep the last value,
as ``JSON.parse`` does. Nesting is bounded (:data:`MAX_DEPTH`) so a
hostile file cannot exhaust the stack. Every error is a
:class:`JsoncError` naming the line and column.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_DEPTH", "JsoncError", "Member", "Node", "parse"]

#: Deepest nesting accepted (a client config is a few levels deep).
MAX_DEPTH = 256

_SPACE = re.compile(r"(?:[ \t\r\n\ufeff]+|//[^\n]*|/\*(?:[^*]|\*(?!/))*\*/)*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}


class JsoncError(ValueError):
    """A syntax error at ``line`` and ``column`` (both from 1)."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        self.message = message
        super().__init__(f"{message} (line {self.line}, column {self.column})")


@dataclass
class Member:
    """One ``"key": value`` of an object; ``start`` is where its key's quote is."""

    key: str
    start: int
    value: Node


@dataclass
class Node:
    """A value and its text span ``[start, end)``; objects and arrays keep their parts."""

    start: int
    end: int
    kind: str  # "object" | "array" | "string" | "number" | "literal"
    scalar: Any = None
    members: list[Member] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)

    def get(self, key: str) -> Node | None:
        """The value of ``key`` in this object (the last one when repeated)."""
        for member in reversed(self.members):
            if member.key == key:
                return member.value
        return None

    def plain(self) -> Any:
        """The value as Python data (``dict``, ``list``, ``str``, numbers, ``None``)."""
        if self.kind == "object":
            return {m.key: m.value.plain() for m in self.members}
        if self.kind == "array":
            return [item.plain() for item in self.items]
        return self.scalar


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, offset: int | None = None) -> JsoncError:
        return JsoncError(message, self.text, self.pos if offset is None else offset)

    def skip(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # the pattern matches the empty string
        self.pos = match.end()
        if self.text.startswith("/*", self.pos):
            raise self.fail("unterminated /* comment")

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def value(self, depth: int) -> Node:
        char = self.peek()
        if not char:
            raise self.fail("unexpected end of file, expected a value")
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        if char == "{":
            return self.container(depth, "}", "object")
        if char == "[":
            return self.container(depth, "]", "array")
        start = self.pos
        if char == '"':
            raw = self.string()
            return Node(start, self.pos, "string", raw)
        match = _NUMBER.match(self.text, start)
        if match is not None and match.end() > start:
            self.pos = match.end()
            return Node(start, self.pos, "number", json.loads(match.group()))
        for word, literal in _LITERALS.items():
            if self.text.startswith(word, start):
                self.pos = start + len(word)
                return Node(start, self.pos, "literal", literal)
        raise self.fail(f"unexpected character {char!r}")

    def string(self) -> str:
        match = _STRING.match(self.text, self.pos)
        if match is None:
            raise self.fail("unterminated string")
        raw = match.group()
        self.pos = match.end()
        if "\\" not in raw:
            return raw[1:-1]
        try:
            decoded: str = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise self.fail(f"bad escape in string: {exc.msg}", match.start() + exc.pos) from None
        return decoded

    def container(self, depth: int, close: str, kind: str) -> Node:
        node = Node(self.pos, self.pos, kind)
        self.pos += 1
        while True:
            char = self.peek()
            if char == close:
                self.pos += 1
                node.end = self.pos
                return node
            if kind == "object":
                if char != '"':
                    raise self.fail(f"expected a key in quotes or {close!r}")
                start = self.pos
                key = self.string()
                if self.peek() != ":":
                    raise self.fail("expected ':' after the key")
                self.pos += 1
                node.members.append(Member(key, start, self.value(depth + 1)))
            else:
                node.items.append(self.value(depth + 1))
            char = self.peek()
            if char == ",":
                self.pos += 1
            elif char != close:
                raise self.fail(f"expected ',' or {close!r}")


def parse(text: str) -> Node:
    """The document ``text`` as a :class:`Node` tree; raises :class:`JsoncError`."""
    parser = _Parser(text)
    node = parser.value(0)
    parser.skip()
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the end of the document")
    return node
