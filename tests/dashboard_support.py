"""Helpers of the dashboard tests: settings on the conformance config (../shared, or
BILLING_SHARED_DIR) with a fresh landing zone, events of right now, and a PostgreSQL database."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from billing_pipelines.resources import BillingSettings
from conftest import CONFORMANCE, shared_path

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def live_settings(root: Path, database_url: str | None = None, landing: Path | None = None) -> BillingSettings:
    env = {"BILLING_HOME": str(root / "home"), "BILLING_CONFIG": str(shared_path(CONFORMANCE / "config")),
           "BILLING_LANDING": str(landing or root / "landing")}
    if database_url:
        env["BILLING_DATABASE_URL"] = database_url
    return BillingSettings.from_env(env)


def now_event(rid: str, org: str = "acme", seconds_ago: int = 60, model: str = "small-fast",
              action: str = "simple", **extra) -> dict:
    ts = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    row = {"request_id": rid, "org_id": org, "user_id": f"{org}-1", "ts": ts.isoformat(timespec="seconds"),
           "model": model, "action": action, "input_tokens": 100, "output_tokens": 50, "latency_ms": 10}
    return {**row, **extra}


def land(settings: BillingSettings, name: str, rows: list[dict], day: str | None = None) -> str:
    """Write a JSON-lines file into today's (or `day`'s) landing folder; returns its key."""
    day = day or datetime.now(timezone.utc).date().isoformat()
    key = f"dt={day}/{name}"
    path = Path(settings.landing) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return key


@contextmanager
def postgres_database(prefix: str = "billing_test_dash"):
    """A fresh PostgreSQL database URL, dropped afterwards; skip (fail under CI) without a server."""
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required under CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        from billing_pipelines.dashboard.state import dashboard_engine

        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        dashboard_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
