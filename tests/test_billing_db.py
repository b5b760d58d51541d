"""The billing database on SQLite and on the PostgreSQL server (a fresh database per test)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import Session, select

from billing_pipelines.config import load_config
from billing_pipelines.month_close.compute import close_month
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage.billing_db import (
    CustomerRow,
    GrantRow,
    InvoiceLineRow,
    InvoiceRow,
    PlanRow,
    PriceBookVersion,
    engine_from_url,
    list_invoices,
    store_draft_invoices,
    store_grants,
    sync_config,
)
from tests.common import CONFORMANCE  # noqa: E402  (tests/data/conformance)
from tests.db_support import DATABASE_KINDS, fresh_database
from tests.reference_ingest import load_landing


@pytest.fixture(params=DATABASE_KINDS)
def engine(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        engine = engine_from_url(url)
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def november():
    config = load_config(CONFORMANCE / "config")
    events = load_landing(CONFORMANCE / "landing", config).frame()
    return config, close_month(config, events, date(2026, 11, 1))


def test_sync_config_mirrors_the_config_files(engine, november):
    config, _ = november
    sync_config(engine, config)
    sync_config(engine, config)
    with Session(engine) as session:
        customers = session.exec(select(CustomerRow).order_by(CustomerRow.org_id)).all()
        assert [c.org_id for c in customers] == ["acme", "globex", "initech"]
        assert customers[1].tax_rate == "0.0825" and customers[1].start_date == date(2026, 9, 15)
        pro = session.get(PlanRow, "pro")
        assert (pro.monthly_fee, pro.overage_credit_price, pro.included_credits) == ("49.00", "0.0120", 5000)
        assert session.get(PlanRow, "free").overage_credit_price is None
        assert len(session.exec(select(PriceBookVersion)).all()) == 1


def test_drafts_are_stored_exactly_and_listed_as_spec_json(engine, november):
    _, close = november
    assert store_draft_invoices(engine, "2026-11", close.invoices) == 3
    assert list_invoices(engine, "2026-11") == [i.to_json() for i in close.invoices]
    with Session(engine) as session:
        acme = session.exec(select(InvoiceRow).where(InvoiceRow.org_id == "acme")).one()
        assert (acme.subtotal, acme.tax, acme.total, acme.status, acme.number) == (
            "149.00", "29.80", "178.80", "draft", None,
        )
        lines = session.exec(select(InvoiceLineRow).where(InvoiceLineRow.invoice_id == acme.id)
                             .order_by(InvoiceLineRow.position)).all()
        assert [(line.kind, line.amount) for line in lines] == [("plan_fee", "49.00"), ("credit_purchase", "100.00")]


def test_storing_drafts_again_replaces_them(engine, november):
    _, close = november
    store_draft_invoices(engine, "2026-11", close.invoices)
    store_draft_invoices(engine, "2026-11", close.invoices)
    assert list_invoices(engine, "2026-11") == [i.to_json() for i in close.invoices]
    with Session(engine) as session:
        assert len(session.exec(select(InvoiceRow)).all()) == 3
        assert len(session.exec(select(InvoiceLineRow)).all()) == 4


def test_finalized_invoices_are_never_touched(engine, november):
    _, close = november
    store_draft_invoices(engine, "2026-11", close.invoices)
    with Session(engine) as session:
        acme = session.exec(select(InvoiceRow).where(InvoiceRow.org_id == "acme")).one()
        acme.status, acme.number = "final", "2026-000001"
        session.add(acme)
        session.commit()
    assert store_draft_invoices(engine, "2026-11", close.invoices) == 2
    listed = list_invoices(engine, "2026-11")
    assert [(i["org_id"], i["status"], i["number"]) for i in listed] == [
        ("acme", "final", "2026-000001"), ("globex", "draft", None), ("initech", "draft", None),
    ]
    assert list_invoices(engine, "2026-10") == []


def test_grants_are_stored_with_exact_unit_prices(engine, november):
    _, close = november
    store_grants(engine, "2026-11", close.grants)
    store_grants(engine, "2026-11", close.grants)
    with Session(engine) as session:
        rollover = session.get(GrantRow, "rollover:acme:2026-10")
        assert (rollover.unit_price, rollover.credits, rollover.consumed) == ("49/5000", 2150, 2150)
        assert len(session.exec(select(GrantRow)).all()) == len(close.grants)


def test_default_url_is_sqlite_under_billing_home(tmp_path, monkeypatch):
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    assert BillingSettings.from_env().database_url == f"sqlite:///{tmp_path / 'home' / 'billing.db'}"
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1/x")
    assert BillingSettings.from_env().database_url == "postgresql+psycopg2://postgres@127.0.0.1/x"
