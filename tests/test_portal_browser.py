"""The customer page in headless Chromium (Debian's `chromium`, driven by Playwright), signed in
with an API token: it shows the balance, and the new balance after a file lands and the
micro-batch runs. The portal link's test is tests/test_portal.py."""

from __future__ import annotations

import pytest

from billing_pipelines.balances.live import process_landed_file
from billing_pipelines.balances.state import balances_engine
from billing_pipelines.serve.app import create_app
from billing_pipelines.serve.server import server_config
from billing_pipelines.serve.tokens import create_token
from tests.balances_support import browser, land, live_settings, now_event, running  # noqa: F401  (browser: a fixture)


@pytest.fixture
def server(tmp_path):
    """`billing serve`'s app on a free port, in a thread; yields (settings, base URL)."""
    settings = live_settings(tmp_path)
    app = create_app(balances_engine(settings.database_url), settings=settings)
    with running(server_config(app, "127.0.0.1", 0, log_level="warning")) as port:
        yield settings, f"http://127.0.0.1:{port}"


def test_page_shows_the_balance_and_then_the_new_balance(browser, server):
    settings, base = server
    process_landed_file(settings, land(settings, "a.jsonl", [now_event("r-1", action="complex")]))
    _, token = create_token(balances_engine(settings.database_url), "acme")
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#token", "bpk_wrong")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('login-error').textContent.includes('not valid')")

    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('consumed').textContent === '5'", timeout=10_000)
    assert page.is_hidden("#login") and page.is_hidden("#login-error")  # the wrong token's error is gone
    assert page.text_content("#org") == "acme · pro plan"
    left = page.text_content("#credits-left")
    assert page.locator("#grants tbody tr").count() >= 1
    # /v1/usage, after the balance
    page.wait_for_function("document.querySelector('#by-tier tbody').textContent === 'complex15'")

    process_landed_file(settings, land(settings, "b.jsonl", [now_event(f"r-{n}", seconds_ago=5) for n in range(2, 12)]))
    page.wait_for_function("document.getElementById('consumed').textContent === '15'", timeout=10_000)
    assert page.text_content("#credits-left") != left
    page.wait_for_function("document.querySelector('#by-tier tbody').textContent === 'complex15simple1010'")
