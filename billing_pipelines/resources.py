"""Settings from the environment (SPEC §6), as one Dagster resource usable without Dagster."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from billing_pipelines.config import BillingConfig, load_config
from billing_pipelines.storage import Store
from billing_pipelines.warehouse import Warehouse


class BillingSettings(dg.ConfigurableResource):
    """Where billing state lives. Every field has an embedded default, so nothing needs a service.

    BILLING_HOME (all state, default ./.billing), BILLING_CONFIG (the three YAML files, default
    ./config), BILLING_LANDING (local folder or s3:// URL, default ./data/landing),
    BILLING_WAREHOUSE (Parquet datasets, default $BILLING_HOME/warehouse, or an s3:// URL),
    BILLING_DATABASE_URL (default SQLite in $BILLING_HOME), BILLING_GRACE_DAYS (default 3).
    """

    home: str
    config_dir: str
    landing: str
    warehouse_root: str
    database_url: str
    grace_days: int = 3

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> BillingSettings:
        env = os.environ if environ is None else environ
        home = str(Path(env.get("BILLING_HOME", ".billing")).resolve())
        grace = env.get("BILLING_GRACE_DAYS", "3")
        if not grace.isdigit():
            raise ValueError(f"BILLING_GRACE_DAYS must be a whole number of days, got {grace!r}")
        return cls(
            home=home,
            config_dir=str(Path(env.get("BILLING_CONFIG", "config")).resolve()),
            landing=_location(env.get("BILLING_LANDING", "data/landing")),
            warehouse_root=_location(env.get("BILLING_WAREHOUSE", f"{home}/warehouse")),
            database_url=env.get("BILLING_DATABASE_URL", f"sqlite:///{home}/billing.db"),
            grace_days=int(grace),
        )

    def billing_config(self) -> BillingConfig:
        return load_config(self.config_dir)

    def landing_store(self) -> Store:
        return Store(self.landing)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_root, Path(self.home) / "tmp" / "warehouse-cache")

    def scratch_dir(self) -> Path:
        """Local spill space for DuckDB."""
        path = Path(self.home) / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path


def _location(value: str) -> str:
    return value if value.startswith("s3://") else str(Path(value).resolve())
