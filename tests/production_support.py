"""The production set-up in tests: a fresh PostgreSQL database per test on the real server at
127.0.0.1:5432 (dropped afterwards), and a Dagster instance loaded from deploy/dagster.yaml on it."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from conftest import require_service

PG_SERVER = os.environ.get("BILLING_TEST_PG", "postgres@127.0.0.1:5432")
DAGSTER_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


def _admin_connection():
    import psycopg2

    try:
        con = psycopg2.connect(f"postgresql://{PG_SERVER}/postgres", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        require_service("PostgreSQL", f"cannot connect to {PG_SERVER}: {exc}".strip())
    con.autocommit = True
    return con


@pytest.fixture
def pg_database():
    """The URL of a new, empty database; dropped after the test. The driver is named: SQLAlchemy
    2.1 reads a bare postgresql:// as psycopg 3, and psycopg2 is the driver installed."""
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_connection()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG_SERVER}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def dagster_home(tmp_path, pg_database, monkeypatch) -> Path:
    """DAGSTER_HOME holding deploy/dagster.yaml, with DAGSTER_PG_URL on the fresh database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", pg_database)
    return home


