"""Search mode (SPEC §8.9): how well and how fast ``bicameral__search_tools`` finds tools.

``python bench/search.py [--json] [--rounds N]`` measures, through the
project's own `bicameral.mcp.surface` (the code the daemon runs, not a
copy):

* recall@5 on a labelled set of requests phrased as people ask
  (``bench/search_queries.json``) over the tools of five real servers from
  the registries (``bench/search_catalog.json``, fetched once by
  ``bench/search_fetch.py``, so this runs offline): the share of requests
  whose answer is among the first five matches. Budget: >= 0.9. The same
  requests are also run with the real tools hidden among a synthetic
  catalog of 325 more (reported, not budgeted);
* ``tools/list`` in search mode against the whole catalog's, in bytes of
  JSON, at about 100 tools and at about 375. Budget: < 10%;
* ``bicameral__search_tools`` latency with 1,000+ tools indexed: p50 of
  every request, after the index is built (its build time is reported).
  Budget: p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bicameral.mcp.surface import (  # noqa: E402
    OWN_TOOLS,
    Catalog,
    Profile,
    SearchIndex,
    Source,
    Surface,
    SurfaceConfig,
    view_size,
)

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "search_catalog.json"
QUERIES = HERE / "search_queries.json"

# A synthetic catalog shaped like real ones: services, each with the usual
# verbs over its own objects, described in the services' own vocabulary.
SERVICES = {
    "tickets": ("ticket", "issue tracker", "priority", "assignee"),
    "chat": ("message", "team chat channel", "channel", "thread"),
    "calendar": ("event", "calendar", "start", "attendees"),
    "crm": ("contact", "customer relationship database", "company", "stage"),
    "billing": ("invoice", "billing system", "amount", "currency"),
    "drive": ("document", "cloud drive", "folder_id", "mime_type"),
    "wiki": ("page", "team wiki", "space", "title"),
    "mail": ("email", "mailbox", "recipient", "subject"),
    "ci": ("pipeline", "continuous integration server", "job", "ref"),
    "deploy": ("release", "deployment platform", "environment", "version"),
    "monitor": ("alert", "monitoring service", "severity", "service"),
    "db": ("record", "SQL database", "table", "query"),
    "analytics": ("report", "product analytics", "metric", "period"),
    "hr": ("employee", "HR system", "department", "manager"),
    "support": ("case", "customer support desk", "customer", "status"),
    "inventory": ("item", "warehouse inventory", "sku", "quantity"),
    "shop": ("order", "online store", "customer_id", "total"),
    "maps": ("place", "maps service", "latitude", "longitude"),
    "weather": ("forecast", "weather service", "city", "days"),
    "news": ("article", "news feed", "topic", "since"),
    "finance": ("transaction", "bank account", "account_id", "date"),
    "notes": ("note", "notebook", "notebook_id", "tags"),
    "tasks": ("task", "to-do list", "due", "list_id"),
    "photos": ("photo", "photo library", "album", "taken_at"),
    "music": ("track", "music streaming service", "playlist", "artist"),
}
VERBS = (
    ("create", "Create a new {o} in the {s}."),
    ("list", "List the {o}s in the {s}, newest first, with paging."),
    ("get", "Get one {o} from the {s} by its id, with all its fields."),
    ("update", "Update the fields of an existing {o} in the {s}."),
    ("delete", "Delete a {o} from the {s}; this cannot be undone."),
    ("search", "Search the {s} for {o}s matching a text query and filters."),
    ("archive", "Archive a {o} in the {s} so it no longer shows in lists."),
    ("export", "Export {o}s from the {s} as CSV or JSON."),
    ("import", "Import {o}s into the {s} from a CSV or JSON file."),
    ("share", "Share a {o} of the {s} with other people, with a permission level."),
    ("comment", "Add a comment to a {o} in the {s}."),
    ("assign", "Assign a {o} in the {s} to a person."),
    ("summarize", "Summarize the recent activity on a {o} in the {s}."),
)


def _schema(obj: str, a: str, b: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            f"{obj}_id": {"type": "string", "description": f"the {obj}'s id"},
            a: {"type": "string", "description": f"the {obj}'s {a.replace('_', ' ')}"},
            b: {"type": "string", "description": f"the {b.replace('_', ' ')} to use"},
            "limit": {"type": "integer", "description": "how many at most", "minimum": 1},
        },
        "required": [f"{obj}_id"],
    }


def synthetic(copies: int = 1) -> list[Source]:
    """325 tools per copy: 25 services x 13 verbs (copies are numbered servers)."""
    sources = []
    for copy in range(copies):
        for service, (obj, where, a, b) in SERVICES.items():
            tools = [
                {
                    "name": f"{verb}_{obj}",
                    "description": text.format(o=obj, s=where),
                    "inputSchema": _schema(obj, a, b),
                }
                for verb, text in VERBS
            ]
            name = service if copy == 0 else f"{service}{copy}"
            sources.append(Source(name, {"tools": tools}, {"tools": []}))
    return sources


def real() -> list[Source]:
    """The five real servers' tools, as they listed them."""
    servers = json.loads(CATALOG.read_text())["servers"]
    return [Source(name, {"tools": s["tools"]}, {"tools": []}) for name, s in servers.items()]


def catalog(sources: list[Source]) -> Catalog:
    profile = Profile("bench", table="[mcp.profiles.bench]", search="on")
    surface = Surface(SurfaceConfig(profiles={"bench": profile}), warn=False)
    return surface.catalog(profile, "tools", sources, OWN_TOOLS)


def recall(
    search: Callable[[str, int], list[dict[str, Any]]], queries: list[dict[str, Any]], k: int = 5
) -> tuple[float, list[Any]]:
    """The share of `queries` with an answer among the first `k` of `search`; the misses."""
    misses = []
    for query in queries:
        found = [t["name"] for t in search(query["q"], k)]
        if not set(found) & set(query["a"]):
            misses.append({"q": query["q"], "want": query["a"], "got": found})
    return 1 - len(misses) / len(queries), misses


def list_share(cat: Catalog) -> dict[str, Any]:
    listed, full = view_size(cat.listed()[0]), view_size(cat.items)
    return {
        "tools": full["tools"],
        "full_bytes": full["bytes"],
        "search_bytes": listed["bytes"],
        "share": listed["bytes"] / full["bytes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.add_argument("--rounds", type=int, default=20, help="latency: rounds of every query")
    args = parser.parse_args()
    labelled = json.loads(QUERIES.read_text())
    queries, holdout = labelled["queries"], labelled["holdout"]
    real_sources = real()
    real_cat = catalog(real_sources)
    real_recall, misses = recall(real_cat.search, queries)
    holdout_recall, holdout_misses = recall(real_cat.search, holdout)
    mixed_recall, _ = recall(catalog(real_sources + synthetic()).search, queries + holdout)
    plain = SearchIndex(real_cat.items, synonyms=False)
    plain_recall, _ = recall(plain.search, queries + holdout)

    about_100 = catalog(real_sources + synthetic()[:4])  # 50 real + 52 synthetic (+2 own)
    about_375 = catalog(real_sources + synthetic())
    shares = [list_share(about_100), list_share(about_375)]

    big_sources = real_sources + synthetic(3)  # 50 + 975 tools
    start = time.perf_counter()
    big = catalog(big_sources)
    big.search("warm up the index", 5)
    build_ms = (time.perf_counter() - start) * 1000
    timings = []
    for _ in range(args.rounds):
        for query in queries:
            t0 = time.perf_counter()
            big.search(query["q"], 5)
            timings.append((time.perf_counter() - t0) * 1000)
    p50 = statistics.median(timings)
    p99 = statistics.quantiles(timings, n=100)[98]

    result = {
        "real_tools": len(real_cat.items) - len(OWN_TOOLS),
        "servers": len(real_sources),
        "queries": len(queries),
        "recall_at_5": real_recall,
        "misses": misses,
        "holdout_queries": len(holdout),
        "holdout_recall_at_5": holdout_recall,
        "holdout_misses": holdout_misses,
        "no_synonyms_recall_at_5": plain_recall,
        "mixed_tools": len(about_375.items),
        "mixed_recall_at_5": mixed_recall,
        "list": shares,
        "search_tools": len(big.items),
        "build_ms": build_ms,
        "p50_ms": p50,
        "p99_ms": p99,
        "ok": real_recall >= 0.9 and all(s["share"] < 0.1 for s in shares) and p50 < 5.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"recall@5 {real_recall:.3f} over {len(queries)} requests, {result['real_tools']} "
            f"tools of {len(real_sources)} real servers (budget >= 0.9); both sets among "
            f"{result['mixed_tools']} tools: {mixed_recall:.3f}"
        )
        for miss in misses:
            print(f"  missed: {miss['q']!r}: want {miss['want']}, got {miss['got']}")
        print(
            f"held-out requests (never used for tuning): recall@5 {holdout_recall:.3f} over "
            f"{len(holdout)}; both sets without the synonym list: {plain_recall:.3f}"
        )
        for miss in holdout_misses:
            print(f"  missed: {miss['q']!r}: want {miss['want']}, got {miss['got']}")
        for share in shares:
            print(
                f"tools/list with {share['tools']} tools: search mode {share['search_bytes']} B "
                f"vs {share['full_bytes']} B, {100 * share['share']:.1f}% (budget < 10%)"
            )
        print(
            f"search with {len(big.items)} tools: p50 {p50:.3f} ms, p99 {p99:.3f} ms "
            f"(budget p50 < 5 ms); index built in {build_ms:.1f} ms"
        )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
