"""Helpers of the balance and portal tests: settings on the conformance config (tests/data) with
a fresh landing zone, events of right now, a PostgreSQL database, a server in a thread, and
headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from billing_pipelines.resources import BillingSettings
from tests.common import CONFORMANCE, require_service
from tests.db_support import fresh_database


def live_settings(root: Path, database_url: str | None = None, landing: Path | None = None) -> BillingSettings:
    env = {"BILLING_HOME": str(root / "home"), "BILLING_CONFIG": str(CONFORMANCE / "config"),
           "BILLING_LANDING": str(landing or root / "landing")}
    if database_url:
        env["BILLING_DATABASE_URL"] = database_url
    return BillingSettings.from_env(env)


def now_event(rid: str, org: str = "acme", seconds_ago: int = 60, model: str = "small-fast",
              action: str = "simple", **extra) -> dict:
    ts = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    row = {"request_id": rid, "org_id": org, "user_id": f"{org}-1", "ts": ts.isoformat(timespec="seconds"),
           "model": model, "action": action, "input_tokens": 100, "output_tokens": 50, "latency_ms": 10}
    return {**row, **extra}


def land(settings: BillingSettings, name: str, rows: list[dict], day: str | None = None) -> str:
    """Write a JSON-lines file into today's (or `day`'s) landing folder; returns its key."""
    day = day or datetime.now(UTC).date().isoformat()
    key = f"dt={day}/{name}"
    path = Path(settings.landing) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return key


@contextmanager
def postgres_database():
    """A fresh PostgreSQL database URL (db_support), the balances' pooled engine on it closed
    before it is dropped."""
    from billing_pipelines.balances.state import balances_engine

    with fresh_database("postgresql") as url:
        try:
            yield url
        finally:
            balances_engine(url).dispose()


@contextmanager
def running(config):
    """A uvicorn server of `config` (port 0: any free one) in a thread; yields its port."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)


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
