"""The tool surface's engine, pure: names, rules, profiles, catalogs, search, config."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from bicameral.daemon import ConfigError
from bicameral.mcp.surface import (
    CALL_TOOL,
    OWN_TOOLS,
    SEARCH_TOOL,
    Profile,
    Refused,
    Rules,
    SearchIndex,
    ServerRules,
    Source,
    Surface,
    SurfaceConfig,
    aggregate_name,
    assign_names,
    check_lists,
    load_surface,
    match_query,
    name_words,
    offer,
    view_size,
)

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tool(name: str, description: str = "", **params: str) -> dict[str, Any]:
    props = {p: {"type": "string", "description": d} for p, d in params.items()}
    schema = {"type": "object", "properties": props}
    return {"name": name, "description": description, "inputSchema": schema}


def source(server: str, tools: list[dict[str, Any]], **lists: Any) -> Source:
    all_lists = {"tools": tools, "prompts": [], "resources": [], "resource_templates": []}
    all_lists.update(lists)
    return Source(server, all_lists, {k: [] for k in all_lists})


GITHUB = [
    tool("get_issue", "Get one issue", number="issue number"),
    tool("search_issues", "Search issues", query="words"),
    tool("delete_repo", "Delete a repository"),
    tool("list_pulls", "List pull requests"),
    tool("admin_reset", "Reset everything"),
]


# -- names ----------------------------------------------------------------------------


def test_names_are_valid_unique_and_stable() -> None:
    names = ["ok_name", "dotted.name", "dotted_name", "sl/ash", "x" * 80, "x" * 79 + "y", "é"]
    first = assign_names(names)
    assert first == assign_names(list(reversed(names)))  # stable: order does not matter
    assert first["ok_name"] == "ok_name" and first["dotted_name"] == "dotted_name"
    assert all(VALID.match(shown) for shown in first.values())
    assert len(set(first.values())) == len(names)
    # "dotted.name" would be "dotted_name", which a valid name already has: hashed.
    assert first["dotted.name"].startswith("dotted_name_") and first["sl/ash"] == "sl_ash"


def test_aggregated_names_keep_within_64_with_a_hash() -> None:
    long = aggregate_name("server", "t" * 70)
    assert len(long) == 64 and VALID.match(long)
    assert long != aggregate_name("server", "t" * 69 + "u")
    assert aggregate_name("files", "read") == "files__read"


# -- rules of one server ------------------------------------------------------------------


def test_allow_deny_rename_and_descriptions_apply_to_one_servers_tools() -> None:
    rules = Rules(
        table="[mcp.servers.github.tools]",
        allow=("get_*", "search_*", "delete_*"),
        deny=("delete_*",),
        rename=(("search_issues", "find_issues"),),
        descriptions=(("find_issues", "Search the team's issues."),),
    )
    result = offer("github", "tools", GITHUB, rules)
    assert [t["name"] for t in result.items] == ["get_issue", "find_issues"]
    assert result.items[1]["description"] == "Search the team's issues."
    assert result.items[1]["inputSchema"] == GITHUB[1]["inputSchema"]
    assert [t["name"] for t in result.prefixed_items] == [
        "github__get_issue",
        "github__find_issues",
    ]
    assert result.local == {"get_issue": "get_issue", "find_issues": "search_issues"}
    assert result.prefixed["github__find_issues"] == "search_issues"
    assert result.problems == []
    assert rules.hides("delete_repo") == '[mcp.servers.github.tools] deny "delete_*"'
    assert "allow" in (rules.hides("list_pulls") or "")


def test_a_rename_onto_a_name_the_server_has_is_a_problem_and_not_applied() -> None:
    rules = Rules(table="[t]", rename=(("get_issue", "list_pulls"),))
    result = offer("github", "tools", GITHUB, rules)
    names = [t["name"] for t in result.items]
    assert len(names) == len(set(names)) and "get_issue" in names
    assert any("already has a tool named 'list_pulls'" in p for p in result.problems)
    # Unless that one is denied (or renamed away): then the name is free.
    ok = offer(
        "github", "tools", GITHUB, Rules(table="[t]", deny=("list_pulls",), rename=rules.rename)
    )
    assert "list_pulls" in [t["name"] for t in ok.items] and not ok.problems


def test_globs_renames_and_descriptions_that_name_nothing_are_problems() -> None:
    rules = Rules(
        table="[mcp.servers.github.tools]",
        allow=("get_*", "nothing_*"),
        deny=("zzz*",),
        rename=(("gone", "x"),),
        descriptions=(("absent", "d"),),
    )
    problems = offer("github", "tools", GITHUB, rules).problems
    assert '[mcp.servers.github.tools] allow "nothing_*" matches none of its 5 tools' in problems
    assert any('deny "zzz*"' in p for p in problems)
    assert any("rename gone" in p for p in problems)
    assert any("descriptions absent" in p for p in problems)


def test_pages_keep_the_servers_paging_with_hidden_items_left_out() -> None:
    tools = [tool(f"t{i}") for i in range(6)]
    result = offer("s", "tools", tools, Rules(deny=("t1", "t4")), sizes=[3, 3])
    assert [[t["name"] for t in page] for page in result.pages] == [["t0", "t2"], ["t3", "t5"]]


def test_resources_are_filtered_by_uri_and_prefixed() -> None:
    resources = [{"uri": "file:///pub/a", "name": "a"}, {"uri": "file:///secret/b", "name": "b"}]
    result = offer("files", "resources", resources, Rules(deny=("file:///secret/*",)))
    assert result.items == [resources[0]]
    assert result.prefixed_items[0]["uri"] == "bicameral://files/file:///pub/a"


# -- aggregated views -----------------------------------------------------------------------


def test_a_profile_filters_prefixed_names_and_servers_and_routes_calls() -> None:
    config = SurfaceConfig(
        rules={"github": ServerRules(tools=Rules(table="[gh]", deny=("delete_*",)))},
        profiles={
            "coding": Profile(
                "coding", table="[mcp.profiles.coding]", servers=("github",), deny=("*admin*",)
            )
        },
    )
    surface = Surface(config)
    sources = [source("github", GITHUB), source("files", [tool("read_file")])]
    profile = surface.profile("coding")
    catalog = surface.catalog(profile, "tools", sources, OWN_TOOLS)
    names = [t["name"] for t in catalog.items]
    assert names == [
        "bicameral__status",
        "bicameral__restart",
        "github__get_issue",
        "github__search_issues",
        "github__list_pulls",
    ]
    assert surface.route(profile, "tools", "github__get_issue", sources, OWN_TOOLS) == (
        "github",
        "get_issue",
    )
    assert surface.route(profile, "tools", "bicameral__status", sources, OWN_TOOLS) is None
    with pytest.raises(Refused, match=r"hidden by \[gh\] deny \"delete_\*\""):
        surface.route(profile, "tools", "github__delete_repo", sources, OWN_TOOLS)
    with pytest.raises(Refused, match=r"hidden by \[mcp.profiles.coding\] deny \"\*admin\*\""):
        surface.route(profile, "tools", "github__admin_reset", sources, OWN_TOOLS)
    with pytest.raises(Refused, match="server 'files' is not in"):
        surface.route(profile, "tools", "files__read_file", sources, OWN_TOOLS)
    # A name not listed (yet) that no rule hides goes to its server as it is.
    assert surface.route(profile, "tools", "github__new_tool", sources) == ("github", "new_tool")
    # The catalog is cached by the lists' identity: a new list, a new catalog.
    assert surface.catalog(profile, "tools", sources, OWN_TOOLS) is catalog
    changed = [source("github", [*GITHUB, tool("get_more")]), sources[1]]
    assert "github__get_more" in surface.catalog(profile, "tools", changed, OWN_TOOLS).routes


def test_unknown_profile_names_the_profiles_that_exist() -> None:
    surface = Surface(SurfaceConfig(profiles={"coding": Profile("coding")}))
    with pytest.raises(Refused, match=r"no profile named 'nope' .*\(profiles: default, coding\)"):
        surface.profile("nope")
    assert surface.profile(None).name == "default"


def test_search_mode_lists_search_call_and_pinned_tools_only() -> None:
    text = "Does the thing this tool is for, with care, and reports what it did. " * 3
    many = [tool(f"tool_{i}", f"{text} ({i})", path="where", mode="how") for i in range(60)]
    profile = Profile(
        "capped", table="[p]", search="auto", search_threshold=40, pinned=("big__tool_7",)
    )
    surface = Surface(SurfaceConfig(profiles={"capped": profile}))
    catalog = surface.catalog(profile, "tools", [source("big", many)], OWN_TOOLS)
    assert catalog.searching
    (page,) = catalog.listed()
    assert [t["name"] for t in page] == [SEARCH_TOOL, CALL_TOOL, "big__tool_7"]
    assert "62 this connection offers" in page[0]["description"]
    assert view_size(page)["bytes"] < 0.1 * view_size(catalog.items)["bytes"]
    # Below the threshold, auto is off.
    few = surface.catalog(profile, "tools", [source("big", many[:10])], OWN_TOOLS)
    assert not few.searching and len(few.listed()[0]) == 12


def test_a_pinned_tool_that_does_not_exist_is_a_problem_once_its_server_listed() -> None:
    profile = Profile("p", table="[mcp.profiles.p]", pinned=("big__nope",))
    config = SurfaceConfig(profiles={"p": profile})
    listed = check_lists(config, [source("big", [tool("yes")])])
    assert len(listed) == 1
    assert listed[0].startswith('[mcp.profiles.p] pinned "big__nope": no such tool in the view')
    unlisted = Source("big", {"tools": []}, {"tools": []}, listed=False)
    assert check_lists(config, [unlisted]) == []


# -- search -------------------------------------------------------------------------------


def test_name_words_and_the_query_builder() -> None:
    assert name_words("git_diff_staged") == "git diff staged"
    assert name_words("createEntities") == "create Entities"
    assert match_query("How do I see what changed in my repo?") == '"see" OR "changed" OR "repo"'
    assert match_query('the "of" NEAR NOT*') == '"near" OR "not"'  # operators are words
    assert match_query("the of") is None


def test_search_ranks_with_fts5_bm25() -> None:
    tools = [
        tool("files__read_text_file", "Read the complete contents of a file as text.", path="p"),
        tool("files__list_directory", "List the files and directories in a folder.", path="p"),
        tool("git__git_commit", "Record changes to the repository.", message="m"),
        tool("time__get_current_time", "Get the current time in a timezone.", timezone="tz"),
    ]
    index = SearchIndex(tools)
    assert index.search("what time is it in Tokyo", 1)[0]["name"] == "time__get_current_time"
    assert index.search("show the contents of a file", 1)[0]["name"] == "files__read_text_file"
    assert index.search("record my changes", 1)[0]["name"] == "git__git_commit"
    assert index.search("folders", 1)[0]["name"] == "files__list_directory"  # stemmed
    assert index.search("", 5) == [] and index.search("zzzz", 5) == []


def test_search_p50_under_5_ms_with_1000_tools() -> None:
    tools = [tool(f"s{i % 10}__op_{i}", f"operation {i} on widget {i % 37}") for i in range(1000)]
    index = SearchIndex(tools)
    timings = []
    for i in range(50):
        start = time.perf_counter()
        index.search(f"widget {i} operation", 5)
        timings.append(time.perf_counter() - start)
    assert sorted(timings)[25] < 0.005


# -- config -------------------------------------------------------------------------------


SERVERS = {"files": object(), "github": object()}


def load(toml: str) -> SurfaceConfig:
    import tomllib

    return load_surface(tomllib.loads(toml), "config.toml", SERVERS)


def test_config_loads_rules_and_profiles() -> None:
    config = load(
        """
        [mcp.servers.github.tools]
        allow = ["get_*"]
        deny = ["delete_*"]
        rename = { search_issues = "find_issues" }
        descriptions = { find_issues = "Find." }
        [mcp.servers.github.prompts]
        deny = ["x"]
        [mcp.profiles.coding]
        servers = ["github"]
        search = "auto"
        search_threshold = 10
        pinned = ["github__get_issue"]
        """
    )
    rules = config.rules["github"]
    assert rules.tools.allow == ("get_*",) and rules.tools.rename == (
        ("search_issues", "find_issues"),
    )
    assert rules.prompts.deny == ("x",)
    assert config.profiles["coding"].search_threshold == 10


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[mcp.servers.github.tools]\nalow = ['x']",
            "config.toml: [mcp.servers.github.tools] unknown key 'alow' "
            "(expected one of: allow, deny, rename, descriptions); did you mean 'allow'?",
        ),
        (
            "[mcp.servers.github.tools]\nallow = 'get_*'",
            '[mcp.servers.github.tools] "allow" must be a list of globs',
        ),
        (
            "[mcp.servers.github.tools]\nrename = { a = 'b.c' }",
            '[mcp.servers.github.tools] rename a = "b.c": a name may hold only',
        ),
        (
            "[mcp.servers.github.tools]\nrename = { a = 'c', b = 'c' }",
            "rename b = \"c\": 'a' is renamed to 'c' too",
        ),
        (
            "[mcp.servers.github.resources]\nrename = { a = 'c' }",
            "resources cannot be renamed",
        ),
        (
            "[mcp.profiles.coding]\nservers = ['gh']",
            "config.toml: [mcp.profiles.coding] \"servers\" names no configured server 'gh' "
            "(configured: files, github); did you mean 'github'?",
        ),
        ("[mcp.profiles.coding]\nsearch = 'maybe'", '"search" must be one of'),
        ("[mcp.profiles.coding]\nsearch_threshold = -1", '"search_threshold" must be'),
        ("[mcp.profiles.coding]\npinned = ['nobody__x']", 'pinned "nobody__x": not a tool'),
        ("[mcp.profiles.coding]\nserver = ['files']", "did you mean 'servers'?"),
        ("[mcp.profiles.'a b']\nsearch = 'on'", "invalid profile name 'a b'"),
    ],
)
def test_bad_config_names_file_table_and_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(toml)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_check_lists_finds_what_only_the_lists_can_tell() -> None:
    config = load(
        """
        [mcp.servers.github.tools]
        deny = ["nothing_*"]
        rename = { get_issue = "list_pulls" }
        """
    )
    problems = check_lists(config, [source("github", GITHUB)])
    assert any('deny "nothing_*" matches none' in p for p in problems)
    assert any("already has a tool named 'list_pulls'" in p for p in problems)


def test_resource_rules_count_resources_and_templates_together() -> None:
    config = load('[mcp.servers.files.resources]\ndeny = ["tmpl://*", "none://*"]')
    resources = [{"uri": "file:///a", "name": "a"}]
    templates = [{"uriTemplate": "tmpl://{x}", "name": "t"}]
    files = source("files", [], resources=resources, resource_templates=templates)
    problems = check_lists(config, [files])
    assert problems == [
        '[mcp.servers.files.resources] deny "none://*" matches none of its 2 resources'
    ]


def test_listener_paths_name_a_server_a_profile_or_nothing() -> None:
    from bicameral.mcp._http import _view

    assert _view("") == (None, None)
    assert _view("files") == ("files", None)
    assert _view("p/coding") == (None, "coding")
    assert _view("p") == ("p", None)  # a server may be named p
    for bad in ("p/", "p/a/b", "x/y"):
        assert _view(bad) is None


def test_catalogs_are_cached_even_over_empty_lists() -> None:
    surface = Surface()
    empty: list[dict[str, Any]] = []
    sources = [source("a", [tool("x")]), Source("b", {"tools": empty}, {"tools": []})]
    first = surface.catalog(surface.profile(None), "tools", sources, OWN_TOOLS)
    assert surface.catalog(surface.profile(None), "tools", sources, OWN_TOOLS) is first
    missing = [Source("c", {}, {})]
    again = surface.catalog(surface.profile(None), "tools", missing, OWN_TOOLS)
    assert surface.catalog(surface.profile(None), "tools", missing, OWN_TOOLS) is again
