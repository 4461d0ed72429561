"""The dashboard in a real headless browser: Debian's chromium, driven by Playwright.

Marked ``browser`` and left out of the default run; ``.ci/run`` runs them
as a step of their own (``pytest -m browser tests/dashboard``), after
installing chromium. ``DASHBOARD_SCREENSHOT=PATH`` saves the picture taken
while the servers run (docs/dashboard.png is one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Listener
from tests.mcp._support import wait_until

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Any, listener: Listener) -> Any:
    """A page signed in through the token form (the way a person does it)."""
    page = browser.new_context(viewport={"width": 1400, "height": 820}).new_page()
    page.goto(listener.url + "/")
    assert page.url == listener.url + "/dashboard/signin"  # no session: to the sign-in form
    page.fill("#token", listener.token)
    page.click("button[type=submit]")
    page.wait_for_url(listener.url + "/")
    return page


def test_sign_in_see_the_servers_and_restart_one_live(
    browser: Any, listener: Listener, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    for word in ("hello", "world"):
        listener.call("beta", "echo", text=word)
    listener.call("gamma", "add", a=2, b=3)
    page = sign_in(browser, listener)
    for name in ("alpha", "beta", "gamma", "broken"):
        expect(page.locator(f'tr[data-server="{name}"]')).to_be_visible()
    alpha = page.locator('tr[data-server="alpha"] span.state')
    expect(alpha).to_have_text("ready", timeout=30_000)
    expect(page.locator('tr[data-server="broken"] td.error')).not_to_be_empty()
    expect(page.locator("#tree ul.tree")).to_contain_text("adapters")
    expect(page.locator("#calls")).to_contain_text("tools/call")

    # The restart button: the state goes starting -> ready in place (the event stream).
    pid_before = page.locator('tr[data-server="alpha"] td').nth(2).inner_text()
    page.click('tr[data-server="alpha"] button[value="restart"]')
    expect(alpha).to_have_text("starting", timeout=10_000)
    expect(alpha).to_have_text("ready", timeout=30_000)
    expect(page.locator('tr[data-server="alpha"] td').nth(2)).not_to_have_text(pid_before)
    expect(page.locator("#notice")).to_be_empty()

    page.click('a.stderr[data-server="broken"]')
    expect(page.locator("#stderr")).to_contain_text("stderr of broken")

    shot = tmp_path / "dashboard.png"
    page.locator("#stderr-card").evaluate("el => el.hidden = true")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


def beta(page: Any, listener: Listener) -> dict[str, Any]:
    state = page.request.get(listener.url + "/dashboard/state").json()
    server: dict[str, Any] = next(s for s in state["servers"] if s["name"] == "beta")
    return server


def test_a_forged_cross_site_post_gets_403(browser: Any, listener: Listener) -> None:
    page = sign_in(browser, listener)
    before = wait_until(lambda: (s := beta(page, listener))["state"] == "ready" and s)
    evil = page.context.new_page()
    form = f"""<form id="f" method="post" action="{listener.url}/dashboard/action">
<input name="server" value="beta"><input name="action" value="stop"></form>
<script>document.getElementById('f').submit()</script>"""
    evil.route(
        "http://evil.test/", lambda route: route.fulfill(body=form, content_type="text/html")
    )
    with evil.expect_response(lambda r: r.url.endswith("/dashboard/action")) as caught:
        evil.goto("http://evil.test/")
    assert caught.value.status == 403
    after = beta(page, listener)
    assert (after["state"], after["pid"]) == ("ready", before["pid"])  # not stopped


def test_without_a_session_the_browser_lands_on_sign_in(browser: Any, listener: Listener) -> None:
    page = browser.new_page()
    page.goto(listener.url + "/")
    assert page.url == listener.url + "/dashboard/signin"
    page.goto(listener.link())
    assert page.url == listener.url + "/"
    page.locator('tr[data-server="beta"]').wait_for()
