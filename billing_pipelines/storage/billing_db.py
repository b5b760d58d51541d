"""The billing database (SQLModel): customers, plans and price-book versions as loaded from the
config files (which stay the source of truth), grants, invoices and invoice lines.

SQLite under BILLING_HOME by default; PostgreSQL where BILLING_DATABASE_URL points to one
(`postgresql+psycopg2://user@host/db`). Money is stored as its exact decimal text, so both
databases keep every digit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, Index, Table, delete, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, create_engine, select

from billing_pipelines.config import BillingConfig, PriceBook
from billing_pipelines.invoicing.models import Adjustment, Invoice
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


FINAL_INVOICE = "status = 'final' AND kind = 'invoice'"


class InvoiceRow(SQLModel, table=True):
    """An invoice (draft or final) or, always final, an adjustment or credit note of a final
    invoice (`refers_to` its number). Money columns of an adjustment hold the difference."""

    __tablename__ = "invoices"
    __table_args__ = (
        Index("one_final_invoice_per_org_month", "org_id", "month", unique=True,
              sqlite_where=text(FINAL_INVOICE), postgresql_where=text(FINAL_INVOICE)),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = "invoice"  # invoice | adjustment | credit_note
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
    refers_to: str | None = None
    issue_date: date | None = None
    rendered_json: str | None = None  # the frozen document its PDF is rendered from
    pdf_key: str | None = None


class DocumentNumberRow(SQLModel, table=True):
    """The last number issued in a year (invoices, adjustments and credit notes share it)."""

    __tablename__ = "document_numbers"
    year: int = Field(primary_key=True)
    last_number: int = 0


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


def engine_from_url(url: str) -> Engine:
    """An engine on `url` (the settings' `database_url`) with every table created (and the folder
    of a SQLite file)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite: wait for the write lock (finalizations serialize on it) rather than fail at once.
    connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
    engine = create_engine(url, connect_args=connect_args)
    SQLModel.metadata.create_all(engine)
    return engine


_ENGINES: dict[str, Engine] = {}


def shared_engine(url: str) -> Engine:
    """This process's one engine on `url` (engine_from_url, made once): every caller shares its
    connection pool."""
    if url not in _ENGINES:
        _ENGINES[url] = engine_from_url(url)
    return _ENGINES[url]


def insert_ignore(conn: Connection, table: Table):
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    dialects = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    if conn.dialect.name not in dialects:
        raise ValueError(f"the billing database must be SQLite or PostgreSQL, not {conn.dialect.name}")
    return dialects[conn.dialect.name](table).on_conflict_do_nothing()


def sync_config(engine: Engine, config: BillingConfig) -> None:
    """Make customers and plans mirror the config, and record its price book version."""
    with Session(engine) as session:
        session.exec(delete(CustomerRow).where(CustomerRow.org_id.not_in(list(config.customers))))
        session.exec(delete(PlanRow).where(PlanRow.plan.not_in(list(config.plans))))
        for c in config.customers.values():
            fields = {k: v for k, v in asdict(c).items() if k in CustomerRow.model_fields}  # not alert settings
            session.merge(CustomerRow(**{**fields, "tax_rate": str(c.tax_rate)}))
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
        loaded_at=datetime.now(UTC),
    )


def store_grants(engine: Engine, month: str, grants: list[Grant]) -> None:
    """Insert or update the grants computed by closing `month` ('YYYY-MM')."""
    with Session(engine) as session:
        for g in grants:
            fields = {
                **asdict(g),
                "start": g.start.replace(tzinfo=UTC),
                "expiry": g.expiry.replace(tzinfo=UTC),
                "unit_price": str(g.unit_price),
                "as_of_month": month,
            }
            session.merge(GrantRow(**fields))
        session.commit()


@contextmanager
def invoicing_transaction(engine: Engine, month: str) -> Iterator[Session]:
    """A session whose transaction is the only writer of `month`'s invoices until it commits at
    the end of the block: BEGIN IMMEDIATE on SQLite (the database's single write lock), a
    transaction-scoped advisory lock on the month on PostgreSQL. Drafts, finalization and
    adjustments of a month therefore never interleave."""
    with Session(engine) as session:
        connection = session.connection()
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:space, :month)"),
                               {"space": INVOICING_LOCK_SPACE, "month": int(month.replace("-", ""))})
        else:
            raise ValueError(f"unsupported billing database {engine.dialect.name!r} (SQLite or PostgreSQL)")
        yield session
        session.commit()


INVOICING_LOCK_SPACE = 4_240_001  # first key of the PostgreSQL advisory locks of invoicing


def next_document_numbers(session: Session, year: int, count: int) -> list[str]:
    """The next `count` numbers of `year` (`INV-2026-000001` first) for invoices, adjustments or
    credit notes. The year's counter row stays locked (SELECT ... FOR UPDATE) until the
    session's transaction ends, so concurrent transactions get consecutive numbers, and one that
    rolls back takes its numbers back with it: no gaps, no reuse."""
    connection = session.connection()
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    connection.execute(insert(DocumentNumberRow).values(year=year, last_number=0).on_conflict_do_nothing())
    counter = DocumentNumberRow.__table__.c
    last = connection.execute(
        select(counter.last_number).where(counter.year == year).with_for_update()).scalar_one()
    connection.execute(update(DocumentNumberRow).where(counter.year == year).values(last_number=last + count))
    return [f"INV-{year}-{n:06d}" for n in range(last + 1, last + count + 1)]


def store_draft_invoices(engine: Engine, month: str, invoices: list[Invoice]) -> int:
    """Replace `month`'s draft invoices by `invoices`, in one transaction.
    Finalized invoices are never touched, and no draft is stored beside one. Returns the
    number of drafts stored."""
    with invoicing_transaction(engine, month) as session:
        final = set(session.exec(select(InvoiceRow.org_id).where(
            InvoiceRow.month == month, InvoiceRow.status == "final", InvoiceRow.kind == "invoice")))
        drafts = select(InvoiceRow.id).where(InvoiceRow.month == month, InvoiceRow.status == "draft")
        session.exec(delete(InvoiceLineRow).where(InvoiceLineRow.invoice_id.in_(drafts)))
        session.exec(delete(InvoiceRow).where(InvoiceRow.month == month, InvoiceRow.status == "draft"))
        stored = [i for i in invoices if i.org_id not in final]
        for invoice in stored:
            if invoice.month != month or invoice.status != "draft":
                raise ValueError(f"{invoice.org_id}: not a draft invoice of {month}")
            add_document(session, invoice)
    return len(stored)


def add_document(session: Session, document: Invoice | Adjustment, rendered: dict | None = None) -> InvoiceRow:
    """Insert an invoice or an adjustment with its lines, as their SPEC §6 text; `rendered` is
    the frozen PDF document of a final one."""
    stored = document.to_json()
    row = InvoiceRow(
        **{k: stored[k] for k in ("org_id", "month", "status", "number", "currency", "subtotal", "tax", "total",
                                   "cogs_usd")},
        kind=stored.get("kind", "invoice"),
        refers_to=stored.get("refers_to"),
        issue_date=date.fromisoformat(stored["issue_date"]) if stored.get("issue_date") else None,
        credits_json=json.dumps(stored["credits"]),
        document_json=json.dumps(stored),
        rendered_json=None if rendered is None else json.dumps(rendered),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    for position, line in enumerate(stored["lines"], start=1):
        session.add(InvoiceLineRow(invoice_id=row.id, position=position, **line))
    return row


def draft_rows(session: Session, month: str) -> list[InvoiceRow]:
    """`month`'s draft invoices, by org_id."""
    query = select(InvoiceRow).where(InvoiceRow.month == month, InvoiceRow.status == "draft")
    return list(session.exec(query.order_by(InvoiceRow.org_id)))


def final_documents(session: Session, month: str) -> dict[str, list[dict]]:
    """Per org, the final invoice of `month` then its adjustments in issue order, as objects."""
    query = select(InvoiceRow).where(InvoiceRow.month == month, InvoiceRow.status == "final")
    documents: dict[str, list[dict]] = {}
    for row in session.exec(query.order_by(InvoiceRow.org_id, InvoiceRow.kind != "invoice", InvoiceRow.id)):
        documents.setdefault(row.org_id, []).append(stored_document(row))
    return documents


def freeze(session: Session, row: InvoiceRow, number: str, issue_date: date, rendered: dict) -> None:
    """Make a draft final under `number`; `rendered` is the document its PDF is made from."""
    document = {**json.loads(row.document_json), "status": "final", "number": number}
    row.status, row.number, row.issue_date = "final", number, issue_date
    row.document_json, row.rendered_json = json.dumps(document), json.dumps(rendered)
    session.add(row)


def unfiled_documents(engine: Engine, month: str) -> list[InvoiceRow]:
    """`month`'s final documents whose PDF is not stored yet."""
    query = select(InvoiceRow).where(
        InvoiceRow.month == month, InvoiceRow.status == "final", InvoiceRow.pdf_sha256.is_(None))
    with Session(engine) as session:
        return list(session.exec(query.order_by(InvoiceRow.id)))


def record_pdf(engine: Engine, row_id: int, key: str, sha256: str) -> None:
    """Record the stored PDF of a final document (once: a recorded PDF is never replaced)."""
    with Session(engine) as session:
        row = session.get(InvoiceRow, row_id)
        if row.pdf_sha256 is None:
            row.pdf_key, row.pdf_sha256 = key, sha256
            session.add(row)
            session.commit()


def stored_document(row: InvoiceRow) -> dict:
    """The row's invoice (SPEC §6) or adjustment object, with status and number as stored."""
    return {**json.loads(row.document_json), "status": row.status, "number": row.number}


def list_invoices(engine: Engine, month: str) -> list[dict]:
    """The invoices of `month` as SPEC §6 objects, sorted by org_id (finalized first where an
    org has both), with status and number as stored; then the adjustments and credit notes,
    sorted by org_id and issue order."""
    with Session(engine) as session:
        rows = session.exec(select(InvoiceRow).where(InvoiceRow.month == month)).all()
    invoices = sorted((r for r in rows if r.kind == "invoice"), key=lambda r: (r.org_id, r.status != "final", r.id))
    adjustments = sorted((r for r in rows if r.kind != "invoice"), key=lambda r: (r.org_id, r.id))
    return [stored_document(row) for row in invoices + adjustments]
