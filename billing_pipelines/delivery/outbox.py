"""The e-mail outbox: each final invoice, adjustment and credit note queued once, under a
Message-ID derived from its number, and delivered with its PDF attached (queue.py says how a
crash between sending and recording is recovered).
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from sqlalchemy import Connection, Engine
from sqlmodel import Session, select

from billing_pipelines.delivery import queue
from billing_pipelines.delivery.mail import Mailer
from billing_pipelines.delivery.models import OutboxMessageRow
from billing_pipelines.invoicing.filing import Issuer
from billing_pipelines.invoicing.models import stored_invoice
from billing_pipelines.invoicing.seller import Seller
from billing_pipelines.periods import parse_month
from billing_pipelines.storage import billing_db
from billing_pipelines.storage.objects import Store

OUTBOX = OutboxMessageRow.__table__
DOCUMENT_NAMES = {"invoice": "Invoice", "adjustment": "Adjustment", "credit_note": "Credit note"}


def message_id(local: str, seller: Seller) -> str:
    """`<local@domain>`, the domain of the seller's e-mail address."""
    return f"<{local}@{seller.email.rpartition('@')[2] or 'billing.invalid'}>"


def sender(seller: Seller) -> str:
    return formataddr((seller.name, seller.email))


def queue_documents(engine: Engine, issuer: Issuer, month: str, now: datetime) -> int:
    """Queue the e-mail of every final document of `month` whose PDF is filed and whose customer
    has an e-mail address, unless queued before; returns how many were queued now."""
    query = select(billing_db.InvoiceRow).where(
        billing_db.InvoiceRow.month == month, billing_db.InvoiceRow.status == "final",
        billing_db.InvoiceRow.pdf_key.is_not(None))
    with Session(engine) as session:
        rows = list(session.exec(query.order_by(billing_db.InvoiceRow.id)))
    messages = [document_message(row, issuer, now) for row in rows
                if row.org_id in issuer.customers and issuer.customers[row.org_id].email]
    with engine.begin() as conn:
        return add_messages(conn, messages)


def add_messages(conn: Connection, messages: list[dict]) -> int:
    """Insert outbox rows (OutboxMessageRow fields) whose Message-ID is new; returns how many."""
    return sum(conn.execute(billing_db.insert_ignore(conn, OUTBOX).values(**m)).rowcount for m in messages)


def document_message(row: billing_db.InvoiceRow, issuer: Issuer, now: datetime) -> dict:
    """The outbox row of a final document's e-mail."""
    seller, customer, what = issuer.seller, issuer.customers[row.org_id], DOCUMENT_NAMES[row.kind]
    period = parse_month(row.month).strftime("%B %Y")
    refers = f" (to invoice {row.refers_to})" if row.refers_to else ""
    total = stored_invoice(billing_db.stored_document(row)).total
    body = (f"Dear {customer.name},\n\nplease find attached {what.lower()} {row.number}{refers} for {period}: "
            f"total {row.currency} {total:,.2f}, due {seller.due_date(row.issue_date).isoformat()}.\n\n"
            f"{seller.name}\n{seller.email}\n")
    return outbox_row(message_id(f"{row.number}.{row.org_id}", seller), row.kind, row.org_id, customer.email,
                      f"{what} {row.number} for {period} from {seller.name}", body, now,
                      seller, row.pdf_key, f"{row.number}.pdf")


def outbox_row(message_id_: str, kind: str, org_id: str, recipient: str, subject: str, body: str, now: datetime,
               seller: Seller, attachment_key: str | None = None, attachment_name: str | None = None) -> dict:
    return {"message_id": message_id_, "kind": kind, "org_id": org_id, "recipient": recipient,
            "sender": sender(seller), "subject": subject, "body": body, "attachment_key": attachment_key,
            "attachment_name": attachment_name, "created_at": now, "next_attempt_at": now}


def email_of(row: dict, store: Store) -> EmailMessage:
    """The message of an outbox row; the same bytes on every attempt."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = row["sender"], row["recipient"], row["subject"]
    message["Message-ID"] = row["message_id"]
    message["Date"] = format_datetime(row["created_at"])
    message.set_content(row["body"])
    if row["attachment_key"]:
        message.add_attachment(store.read_bytes(row["attachment_key"]), maintype="application", subtype="pdf",
                               filename=row["attachment_name"])
    return message


def deliver_outbox(engine: Engine, mailer: Mailer, store: Store, now: datetime) -> dict[str, int]:
    """Send every due message (queue.due); returns how many were sent and failed now."""
    done = {"sent": 0, "failed": 0}
    for row in queue.claimed(engine, OUTBOX, now):
        try:
            mailer.send(email_of(row, store))
        except Exception as exc:  # noqa: BLE001  any failure is the message's, retried later
            queue.record(engine, OUTBOX, row, now, f"{type(exc).__name__}: {exc}")
            done["failed"] += 1
        else:
            queue.record(engine, OUTBOX, row, now, None)
            done["sent"] += 1
    return done
