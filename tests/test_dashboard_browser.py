"""The customer page in headless Chromium (Debian's `chromium`, driven by Playwright): it shows
the balance, and the new balance after a file lands and the micro-batch runs."""

from __future__ import annotations

import os
import shutil

import pytest

from billing_pipelines.dashboard.app import create_app
from billing_pipelines.dashboard.live import process_landed_file
from billing_pipelines.dashboard.state import dashboard_engine
from billing_pipelines.dashboard.tokens import create_token
from billing_pipelines.web import server_config
from conftest import require_service
from dashboard_support import land, live_settings, now_event, running

CHROMIUM = os.environ.get("BILLING_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser():
    if not shutil.which(CHROMIUM):
        require_service("chromium", f"{CHROMIUM} is not installed (scripts/system-deps.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("playwright", "the Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path):
    """`billing serve`'s app on a free port, in a thread; yields (settings, base URL)."""
    settings = live_settings(tmp_path)
    app = create_app(dashboard_engine(settings.database_url))
    with running(server_config(app, "127.0.0.1", 0, log_level="warning")) as port:
        yield settings, f"http://127.0.0.1:{port}"


def test_page_shows_the_balance_and_then_the_new_balance(browser, server):
    settings, base = server
    process_landed_file(settings, land(settings, "a.jsonl", [now_event("r-1", action="complex")]))
    _, token = create_token(dashboard_engine(settings.database_url), "acme")
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#token", "bpk_wrong")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('login-error').textContent.includes('not valid')")

    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('consumed').textContent === '5'", timeout=10_000)
    assert page.text_content("#org") == "acme · pro plan"
    left = page.text_content("#credits-left")
    assert page.locator("#grants tbody tr").count() >= 1
    assert page.text_content("#by-tier tbody") == "complex15"

    process_landed_file(settings, land(settings, "b.jsonl", [now_event(f"r-{n}", seconds_ago=5) for n in range(2, 12)]))
    page.wait_for_function("document.getElementById('consumed').textContent === '15'", timeout=10_000)
    assert page.text_content("#credits-left") != left
    assert page.text_content("#by-tier tbody") == "complex15simple1010"
