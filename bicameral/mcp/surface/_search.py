"""Search over a view's tools: SQLite FTS5, ranked by its BM25.

The ranker is SQLite's own (the standard library's `sqlite3`, an in-memory
database): an FTS5 table of one row per tool, with columns for the words of
its name, its title, its description and its parameters, and the Porter
stemmer on Unicode-aware tokens, so "files", "filed" and "filing" meet
"file". Nothing here ranks by hand: `SearchIndex.search` asks FTS5 for the
rows matching any word of the query, ordered by ``bm25()`` with a weight per
column (a word of the name counts most).

`match_query` turns what a person or a model types ("how do I see what
changed in my repo?") into an FTS5 query: the words, less the filler that
every description has, each quoted (FTS5 operators and punctuation in a
query are words, never syntax), joined by ``OR``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SearchIndex", "match_query", "name_words"]

#: Column weights for ``bm25()``: name, title, description, parameters.
WEIGHTS = (4.0, 2.0, 1.0, 1.0)

_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

#: Words that say nothing about which tool is meant: the ones requests are
#: made of ("can you please show me how to...") and descriptions are full of.
_FILLER = """
a about all an and any are as at be by can could do does for from get give
have how i in into is it its let me my of on or please should so some
that the their them then there these this to use using want was we what
when where which who why will with would you your
"""
STOPWORDS = frozenset(_FILLER.split())


#: Everyday words for what tools call otherwise, in groups of equals: a
#: query word brings the rest of its group along (each a word of its own in
#: the ``OR``, so a tool that has the query's own word still ranks first).
#: Generic on purpose (files, records, versions, time); measured by
#: ``bench/search.py``, which reports recall with and without them.
SYNONYM_GROUPS = (
    "delete remove drop erase forget discard",
    "create make new",
    "directory folder dir",
    "read open view show display print contents inside",
    "search find lookup look locate query",
    "write save store",
    "edit modify change alter",
    "move rename relocate",
    "image picture photo screenshot png jpg",
    "size sizes big large space bytes",
    "time clock hour",
    "log history",
    "commit check",
    "checkout switch",
    "diff changes compare difference",
    "compress zip gzip shrink smaller",
    "sum total plus",
    "echo repeat",
    "environment env variables",
    "entity entities person people someone",
    "relation relations link relationship connection",
    "observation observations fact facts",
    "graph knowledge memory remember",
    "tree nested hierarchy layout structure",
    "research investigate dig",
    "progress long slow running",
    "metadata info details modified",
    "allowed permitted access",
)
SYNONYMS: dict[str, tuple[str, ...]] = {}
for _group in SYNONYM_GROUPS:
    for _word in _group.split():
        SYNONYMS[_word] = tuple(w for w in _group.split() if w != _word)


def name_words(name: str) -> str:
    """The words of a tool or parameter name: ``git_diff_staged`` -> ``git diff staged``."""
    spaced = _CAMEL.sub(" ", name)
    return " ".join(_WORD.findall(spaced))


def match_query(text: str, *, synonyms: bool = True) -> str | None:
    """An FTS5 query for `text`: its words, less filler, quoted and joined by ``OR``.

    With `synonyms`, each word brings its `SYNONYMS`. ``None`` when nothing
    searchable is left (then nothing matches).
    """
    words = []
    for word in _WORD.findall(name_words(text).lower()):
        if len(word) < 2 or word.isdigit() or word in STOPWORDS:
            continue  # "s" of "what's", "17" of "add 17 and 25": they match noise
        for each in (word, *(SYNONYMS.get(word, ()) if synonyms else ())):
            if each not in words:
                words.append(each)
    if not words:
        return None
    return " OR ".join(f'"{word}"' for word in words)


def _params(schema: Any) -> str:
    """The names (as words) and descriptions of a tool's parameters."""
    if not isinstance(schema, dict):
        return ""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return ""
    parts = []
    for name, spec in props.items():
        parts.append(name_words(str(name)))
        if isinstance(spec, dict) and isinstance(spec.get("description"), str):
            parts.append(spec["description"])
    return " ".join(parts)


def _title(tool: dict[str, Any]) -> str:
    titles = [tool.get("title")]
    annotations = tool.get("annotations")
    if isinstance(annotations, dict):
        titles.append(annotations.get("title"))
    return " ".join(t for t in titles if isinstance(t, str))


class SearchIndex:
    """An in-memory FTS5 index of `tools` (the tool objects a view offers).

    Built once per version of a view's catalog (a few milliseconds for a
    thousand tools) and queried many times; `search` returns the tool
    objects themselves, best first.
    """

    def __init__(self, tools: list[dict[str, Any]], *, synonyms: bool = True) -> None:
        import sqlite3  # here: the daemon's path to readiness never needs it

        self.tools = tools
        self.synonyms = synonyms
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(
            "CREATE VIRTUAL TABLE tool USING fts5("
            "name, title, description, params, tokenize = 'porter unicode61')"
        )
        rows = []
        for index, tool in enumerate(tools):
            description = tool.get("description")
            rows.append(
                (
                    index,
                    name_words(str(tool.get("name", ""))),
                    _title(tool),
                    description if isinstance(description, str) else "",
                    _params(tool.get("inputSchema")),
                )
            )
        with self._db:
            self._db.executemany(
                "INSERT INTO tool (rowid, name, title, description, params) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        self._sql = f"SELECT rowid FROM tool WHERE tool MATCH ? ORDER BY bm25(tool, {', '.join(map(str, WEIGHTS))}) LIMIT ?"  # noqa: E501

    def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """The tools that best match `query`, best first (at most `limit`)."""
        expression = match_query(query, synonyms=self.synonyms)
        if expression is None or limit <= 0:
            return []
        rows = self._db.execute(self._sql, (expression, limit)).fetchall()
        return [self.tools[rowid] for (rowid,) in rows]

    def close(self) -> None:
        self._db.close()
