"""The billing database (SQLModel): customers, plans and price-book versions as loaded from the
config files (which stay the source of truth), grants, invoices and invoice lines.

SQLite under BILLING_HOME by default; PostgreSQL where BILLING_DATABASE_URL points to one
(`postgresql+psycopg2://user@host/db`). Money is stored as its exact decimal text, so both
databases keep every digit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, delete
from sqlmodel import Field, Session, SQLModel, create_engine, select

from billing_pipelines.config import BillingConfig, PriceBook
from billing_pipelines.ledger.grants import Grant


class CustomerRow(SQLModel, table=True):
    __tablename__ = "customers"
    org_id: str = Field(primary_key=True)
    name: str
    plan: str
    start_date: date
    tax_rate: str
    email: str = ""
    address: str = ""


class PlanRow(SQLModel, table=True):
    __tablename__ = "plans"
    plan: str = Field(primary_key=True)
    monthly_fee: str
    included_credits: int
    overage_credit_price: str | None = None
    rollover_max_credits: int
    rollover_expires_after_months: int
    rate_limits_json: str


class PriceBookVersion(SQLModel, table=True):
    """One distinct price book ever loaded, keyed by the hash of its content."""

    __tablename__ = "price_book_versions"
    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(unique=True, index=True)
    currency: str
    target_credit_to_cost_ratio: str
    models_json: str
    actions_json: str
    loaded_at: datetime


class GrantRow(SQLModel, table=True):
    """A credit grant as of the last month close that computed it (`as_of_month`)."""

    __tablename__ = "grants"
    grant_id: str = Field(primary_key=True)
    org_id: str = Field(index=True)
    kind: str
    start: datetime
    expiry: datetime
    credits: int
    unit_price: str  # exact fraction, "n/d"
    origin: str
    consumed: int
    expired: int
    rolled_over: int
    as_of_month: str


class InvoiceRow(SQLModel, table=True):
    __tablename__ = "invoices"
    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(index=True)
    month: str = Field(index=True)
    status: str  # draft | final
    number: str | None = Field(default=None, unique=True)
    currency: str
    subtotal: str
    tax: str
    total: str
    cogs_usd: str
    credits_json: str
    document_json: str
    pdf_sha256: str | None = None
    created_at: datetime


class InvoiceLineRow(SQLModel, table=True):
    __tablename__ = "invoice_lines"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    position: int
    kind: str
    description: str
    quantity: str
    unit_price: str
    amount: str


def default_database_url() -> str:
    """BILLING_DATABASE_URL, else SQLite in BILLING_HOME (default ./.billing)."""
    url = os.environ.get("BILLING_DATABASE_URL")
    if url:
        return url
    home = Path(os.environ.get("BILLING_HOME", "./.billing"))
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home.resolve() / 'billing.db'}"


def engine_from_url(url: str | None = None) -> Engine:
    """An engine on `url` (default: default_database_url()) with every table created."""
    engine = create_engine(url or default_database_url())
    SQLModel.metadata.create_all(engine)
    return engine


def sync_config(engine: Engine, config: BillingConfig) -> None:
    """Make customers and plans mirror the config, and record its price book version."""
    with Session(engine) as session:
        session.exec(delete(CustomerRow).where(CustomerRow.org_id.not_in(list(config.customers))))
        session.exec(delete(PlanRow).where(PlanRow.plan.not_in(list(config.plans))))
        for c in config.customers.values():
            session.merge(CustomerRow(**{**asdict(c), "tax_rate": str(c.tax_rate)}))
        for p in config.plans.values():
            session.merge(_plan_row(p))
        version = _price_book_version(config.price_book)
        known = select(PriceBookVersion).where(PriceBookVersion.fingerprint == version.fingerprint)
        if session.exec(known).first() is None:
            session.add(version)
        session.commit()


def _plan_row(plan) -> PlanRow:
    price = plan.overage_credit_price
    return PlanRow(
        plan=plan.plan,
        monthly_fee=str(plan.monthly_fee),
        included_credits=plan.included_credits,
        overage_credit_price=None if price is None else str(price),
        rollover_max_credits=plan.rollover_max_credits,
        rollover_expires_after_months=plan.rollover_expires_after_months,
        rate_limits_json=json.dumps(asdict(plan.rate_limits), default=str),
    )


def _price_book_version(book: PriceBook) -> PriceBookVersion:
    models = json.dumps([asdict(m) for m in book.models], default=str)
    actions = json.dumps([asdict(a) for a in book.actions])
    content = f"{book.currency}\0{book.target_credit_to_cost_ratio}\0{models}\0{actions}"
    return PriceBookVersion(
        fingerprint=hashlib.sha256(content.encode()).hexdigest(),
        currency=book.currency,
        target_credit_to_cost_ratio=str(book.target_credit_to_cost_ratio),
        models_json=models,
        actions_json=actions,
        loaded_at=datetime.now(timezone.utc),
    )


def store_grants(engine: Engine, month: str, grants: list[Grant]) -> None:
    """Insert or update the grants computed by closing `month` ('YYYY-MM')."""
    with Session(engine) as session:
        for g in grants:
            fields = {
                **asdict(g),
                "start": g.start.replace(tzinfo=timezone.utc),
                "expiry": g.expiry.replace(tzinfo=timezone.utc),
                "unit_price": str(g.unit_price),
                "as_of_month": month,
            }
            session.merge(GrantRow(**fields))
        session.commit()


def store_draft_invoices(engine: Engine, month: str, invoices: list[dict]) -> int:
    """Replace `month`'s draft invoices by `invoices` (SPEC §6 objects), in one transaction.
    Finalized invoices are never touched, and no draft is stored beside one. Returns the
    number of drafts stored."""
    with Session(engine) as session:
        final = set(session.exec(
            select(InvoiceRow.org_id).where(InvoiceRow.month == month, InvoiceRow.status == "final")
        ))
        drafts = select(InvoiceRow.id).where(InvoiceRow.month == month, InvoiceRow.status == "draft")
        session.exec(delete(InvoiceLineRow).where(InvoiceLineRow.invoice_id.in_(drafts)))
        session.exec(delete(InvoiceRow).where(InvoiceRow.month == month, InvoiceRow.status == "draft"))
        stored = [i for i in invoices if i["org_id"] not in final]
        for invoice in stored:
            _add_invoice(session, month, invoice)
        session.commit()
    return len(stored)


def _add_invoice(session: Session, month: str, invoice: dict) -> None:
    if invoice["month"] != month or invoice["status"] != "draft":
        raise ValueError(f"{invoice['org_id']}: not a draft invoice of {month}")
    row = InvoiceRow(
        org_id=invoice["org_id"],
        month=month,
        status="draft",
        currency=invoice["currency"],
        subtotal=invoice["subtotal"],
        tax=invoice["tax"],
        total=invoice["total"],
        cogs_usd=invoice["cogs_usd"],
        credits_json=json.dumps(invoice["credits"]),
        document_json=json.dumps(invoice),
        created_at=datetime.now(timezone.utc),
    )
    session.add(row)
    session.flush()
    for position, line in enumerate(invoice["lines"], start=1):
        session.add(InvoiceLineRow(invoice_id=row.id, position=position, **line))


def record_invoice_pdf(engine: Engine, month: str, org_id: str, pdf_sha256: str) -> None:
    """Record the SHA-256 of the PDF rendered for the customer's draft invoice of `month`."""
    with Session(engine) as session:
        draft = session.exec(select(InvoiceRow).where(
            InvoiceRow.month == month, InvoiceRow.org_id == org_id, InvoiceRow.status == "draft"
        )).first()
        if draft is None:
            raise ValueError(f"no draft invoice of {org_id} for {month}")
        draft.pdf_sha256 = pdf_sha256
        session.add(draft)
        session.commit()


def list_invoices(engine: Engine, month: str) -> list[dict]:
    """The invoices of `month` as SPEC §6 objects, sorted by org_id (finalized first where an
    org has both), with status and number as stored."""
    with Session(engine) as session:
        rows = session.exec(
            select(InvoiceRow).where(InvoiceRow.month == month).order_by(InvoiceRow.org_id, InvoiceRow.id)
        ).all()
    documents = []
    for row in sorted(rows, key=lambda r: (r.org_id, r.status != "final", r.id)):
        document = json.loads(row.document_json)
        document.update(status=row.status, number=row.number)
        documents.append(document)
    return documents
