"""The production set-up in tests: a fresh PostgreSQL database per test on the real server at
127.0.0.1:5432 (dropped afterwards), and a Dagster instance loaded from deploy/dagster.yaml on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.db_support import fresh_database

DAGSTER_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


@pytest.fixture
def pg_database():
    """The URL of a new, empty database (db_support), dropped after the test."""
    with fresh_database("postgresql") as url:
        yield url


@pytest.fixture
def dagster_home(tmp_path, pg_database, monkeypatch) -> Path:
    """DAGSTER_HOME holding deploy/dagster.yaml, with DAGSTER_PG_URL on the fresh database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", pg_database)
    return home


