"""The dashboard's guard and sessions over plain HTTP (no browser): part of the default run."""

from __future__ import annotations

import httpx2

from tests.dashboard.conftest import Listener
from tests.mcp._support import wait_until


def signed_in(listener: Listener, http: httpx2.Client) -> str:
    """Sign `http` in with a one-time link; the page's CSRF token."""
    answer = http.get(listener.link())
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = http.get("/")
    assert page.status_code == 200
    return page.text.split('name="csrf" content="')[1].split('"')[0]


def test_without_a_session_pages_redirect_to_sign_in_and_posts_are_refused(
    listener: Listener,
) -> None:
    with httpx2.Client(base_url=listener.url, timeout=30) as http:
        for path in ("/", "/dashboard/events", "/dashboard/state"):
            answer = http.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == "/dashboard/signin"
        own = {"Origin": listener.url}
        refused = http.post(
            "/dashboard/action", data={"server": "beta", "action": "stop"}, headers=own
        )
        assert refused.status_code == 403
        assert http.get("/dashboard/signin").status_code == 200
        assert http.get("/mcp").status_code == 401  # /mcp still wants the bearer token


def test_the_token_form_and_the_one_time_link(listener: Listener) -> None:
    own = {"Origin": listener.url}
    with httpx2.Client(base_url=listener.url, timeout=30) as http:
        wrong = http.post("/dashboard/signin", data={"token": "nope"}, headers=own)
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        right = http.post("/dashboard/signin", data={"token": listener.token}, headers=own)
        assert right.status_code == 303 and "set-cookie" in right.headers
        assert http.get("/").status_code == 200
    link = listener.link()
    with httpx2.Client(base_url=listener.url, timeout=30) as http:
        assert http.get(link).status_code == 303
    with httpx2.Client(base_url=listener.url, timeout=30) as http:
        assert http.get(link).status_code == 403  # a link works once
        assert http.get("/").status_code == 303


def test_a_forged_post_gets_403_and_a_real_one_restarts_the_server(listener: Listener) -> None:
    with httpx2.Client(base_url=listener.url, timeout=30) as http:
        csrf = signed_in(listener, http)
        form = {"server": "beta", "action": "restart"}
        evil = http.post("/dashboard/action", data=form, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        no_origin = http.post("/dashboard/action", data=form, headers={"X-CSRF-Token": csrf})
        assert no_origin.status_code == 403
        own = {"Origin": listener.url}
        no_csrf = http.post("/dashboard/action", data=form, headers=own)
        assert no_csrf.status_code == 403
        before = next(
            s for s in http.get("/dashboard/state").json()["servers"] if s["name"] == "beta"
        )
        ok = http.post("/dashboard/action", data=form, headers={**own, "X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["ok"] is True

        def restarted() -> bool:
            state = http.get("/dashboard/state").json()
            beta = next(s for s in state["servers"] if s["name"] == "beta")
            return bool(beta["state"] == "ready" and beta["pid"] != before["pid"])

        wait_until(restarted)
        unknown = http.post(
            "/dashboard/action",
            data={"server": "nope", "action": "stop"},
            headers={**own, "X-CSRF-Token": csrf},
        )
        assert unknown.status_code == 409 and "no adapter named 'nope'" in unknown.json()["error"]


def test_recent_calls_and_a_servers_stderr_are_shown(listener: Listener) -> None:
    answer = listener.call("beta", "echo", text="seen")
    assert answer.status_code == 200
    with httpx2.Client(base_url=listener.url, timeout=30) as http:
        signed_in(listener, http)
        calls = http.get("/dashboard/state").json()["calls"]
        mine = [c for c in calls if c["server"] == "beta" and c["method"] == "tools/call"]
        assert mine and mine[0]["ok"] is True and mine[0]["ms"] > 0
        broken = next(
            s for s in http.get("/dashboard/state").json()["servers"] if s["name"] == "broken"
        )
        assert broken["last_error"]
        tail = http.get("/dashboard/stderr", params={"server": "beta"})
        assert tail.status_code == 200 and "stderr of beta" in tail.text
        page = http.get("/").text
        assert (
            '<script src="/dashboard/app.js">' in page and "http://" not in page.split("<body>")[1]
        )
