"""Where billing state lives (SPEC §6), as Dagster resources: the warehouse, the billing database
and the billing config, each built from environment variables, and `BillingSettings`, which
combines them into what the domain functions take (usable without Dagster too).

In the Dagster definitions every value set in the environment is a `dg.EnvVar`: the UI's
resource page and launchpad show the variable's name, never its value (a database password).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Engine

from billing_pipelines.config import BillingConfig, load_config
from billing_pipelines.storage.objects import Store
from billing_pipelines.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The Parquet warehouse (BILLING_WAREHOUSE: a folder or an s3:// URL) and BILLING_HOME, the
    local folder of all other state and of DuckDB's spill space."""

    root: str
    home: str

    def warehouse(self) -> Warehouse:
        return Warehouse(self.root, Path(self.home) / "tmp" / "warehouse-cache")


class BillingDatabase(dg.ConfigurableResource):
    """The billing database (BILLING_DATABASE_URL): customers, plans, invoices. One engine (and
    connection pool) per process and URL."""

    url: str

    def engine(self) -> Engine:
        from billing_pipelines.storage.billing_db import shared_engine

        return shared_engine(self.url)


class BillingConfigResource(dg.ConfigurableResource):
    """The billing config (BILLING_CONFIG: customers, plans, price book), the landing zone
    (BILLING_LANDING), the grace period (BILLING_GRACE_DAYS), the dates known to have no files
    (BILLING_KNOWN_GAPS) and the quarantined share a date may reach (BILLING_QUARANTINE_LIMIT)."""

    config_dir: str
    landing: str
    grace_days: int = 3
    known_gaps: str = ""
    quarantine_limit: str = "0.05"


class DeliveryResource(dg.ConfigurableResource):
    """Where e-mails go (BILLING_SMTP_URL, a secret: its password is shown nowhere; empty: `.eml`
    files under $BILLING_HOME/outbox) and who hears of customers below target (BILLING_FINANCE_EMAIL)."""

    smtp_url: str = ""
    finance_email: str = ""


def _of(resource: str, field: str) -> property:
    """A read-only attribute of BillingSettings: `field` of its resource `resource`."""
    return property(lambda self: getattr(getattr(self, resource), field))


class BillingSettings(dg.ConfigurableResource):
    """The warehouse, the billing database and the billing config of one deployment. Every
    setting has an embedded default, so nothing needs a service: BILLING_HOME (default
    ./.billing), BILLING_CONFIG (./config), BILLING_LANDING (./data/landing), BILLING_WAREHOUSE
    ($BILLING_HOME/warehouse), BILLING_DATABASE_URL (SQLite in $BILLING_HOME), BILLING_GRACE_DAYS (3),
    BILLING_SMTP_URL and BILLING_FINANCE_EMAIL (none)."""

    storage: WarehouseResource
    database: BillingDatabase
    setup: BillingConfigResource
    delivery: DeliveryResource

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BillingSettings:
        """The settings of `environ` (default os.environ), as values."""
        return cls._build(os.environ if environ is None else environ, lambda name, value: value)

    @classmethod
    def for_definitions(cls, environ: Mapping[str, str] | None = None) -> BillingSettings:
        """The settings as the Dagster definitions hold them: each variable set in the environment
        is a `dg.EnvVar`, read when a run starts and shown by name only (a relative path is
        resolved here, where the definitions load)."""
        env = os.environ if environ is None else environ
        return cls._build(env, lambda name, value: dg.EnvVar(name))

    @classmethod
    def _build(cls, env: Mapping[str, str], source) -> BillingSettings:
        home = str(Path(env.get("BILLING_HOME", ".billing")).resolve())
        grace = env.get("BILLING_GRACE_DAYS", "3")
        if not grace.isdigit():
            raise ValueError(f"BILLING_GRACE_DAYS must be a whole number of days, got {grace!r}")
        values = {
            "BILLING_HOME": home,
            "BILLING_CONFIG": str(Path(env.get("BILLING_CONFIG", "config")).resolve()),
            "BILLING_LANDING": _location(env.get("BILLING_LANDING", "data/landing")),
            "BILLING_WAREHOUSE": _location(env.get("BILLING_WAREHOUSE", f"{home}/warehouse")),
            "BILLING_DATABASE_URL": env.get("BILLING_DATABASE_URL", f"sqlite:///{home}/billing.db"),
            "BILLING_KNOWN_GAPS": env.get("BILLING_KNOWN_GAPS", ""),
            "BILLING_QUARANTINE_LIMIT": env.get("BILLING_QUARANTINE_LIMIT", "0.05"),
            "BILLING_SMTP_URL": env.get("BILLING_SMTP_URL", ""),
            "BILLING_FINANCE_EMAIL": env.get("BILLING_FINANCE_EMAIL", ""),
        }
        value = {name: source(name, v) if env.get(name) == v else v for name, v in values.items()}
        return cls(
            storage=WarehouseResource(root=value["BILLING_WAREHOUSE"], home=value["BILLING_HOME"]),
            database=BillingDatabase(url=value["BILLING_DATABASE_URL"]),
            setup=BillingConfigResource(config_dir=value["BILLING_CONFIG"], landing=value["BILLING_LANDING"],
                                        grace_days=int(grace), known_gaps=value["BILLING_KNOWN_GAPS"],
                                        quarantine_limit=value["BILLING_QUARANTINE_LIMIT"]),
            delivery=DeliveryResource(smtp_url=value["BILLING_SMTP_URL"], finance_email=value["BILLING_FINANCE_EMAIL"]),
        )

    # the settings the domain functions read, by their environment names
    home = _of("storage", "home")
    warehouse_root = _of("storage", "root")
    database_url = _of("database", "url")
    config_dir = _of("setup", "config_dir")
    landing = _of("setup", "landing")
    grace_days = _of("setup", "grace_days")
    smtp_url = _of("delivery", "smtp_url")
    finance_email = _of("delivery", "finance_email")

    def known_gaps(self) -> set:
        from billing_pipelines.ingest.quality import known_gaps

        return known_gaps(self.setup.known_gaps)

    def quarantine_limit(self) -> Decimal:
        from billing_pipelines.ingest.quality import quarantine_limit

        return quarantine_limit(self.setup.quarantine_limit)

    def billing_config(self) -> BillingConfig:
        return load_config(self.config_dir)

    def engine(self) -> Engine:
        return self.database.engine()

    def landing_store(self) -> Store:
        return Store(self.landing)

    def warehouse(self) -> Warehouse:
        return self.storage.warehouse()

    def scratch_dir(self) -> Path:
        """Local spill space for DuckDB."""
        path = Path(self.home) / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path


def _location(value: str) -> str:
    return value if value.startswith("s3://") else str(Path(value).resolve())
