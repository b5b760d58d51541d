"""A fresh billing database per test: SQLite in the test's folder, or a new database on the
PostgreSQL server at 127.0.0.1:5432 (user postgres, trust), dropped afterwards. A missing server
skips the test, or fails it under CI=true."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.common import require_service

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
DATABASE_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _postgres_admin():
    """An autocommit engine on the server's `postgres` database; skip (or fail under CI)."""
    try:
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
        return admin
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        require_service("PostgreSQL", f"127.0.0.1:5432 is not reachable: {exc}")


@contextmanager
def fresh_database(kind: str, folder: Path | None = None) -> Iterator[str]:
    """The URL of an empty database of `kind` (sqlite or postgresql), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'billing.db'}"
        return
    admin = _postgres_admin()
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
