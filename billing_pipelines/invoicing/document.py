"""An invoice document (the SPEC §6 invoice JSON, extended for the PDF), checked and formatted.

`invoice_view(document)` validates the document once (`InvoiceDocument`, a pydantic model: an
error names the field) and returns what the template prints: every figure as display text.
Money stays Decimal until it is formatted; nothing is rounded here, the document's own digits
are printed (with thousands separators).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from billing_pipelines.config import Customer
from billing_pipelines.invoicing.models import Adjustment, Invoice, InvoiceLine
from billing_pipelines.invoicing.seller import Seller
from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.money import DecimalText, Money
from billing_pipelines.periods import add_months, parse_month

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
TITLES = {"invoice": "Invoice", "adjustment": "Adjustment", "credit_note": "Credit note"}


class InvoiceDocumentError(ValueError):
    """An invoice document that cannot be rendered; the message names the field."""


@dataclass(frozen=True)
class Row:
    """One printed row: a label and its display values."""

    label: str
    values: tuple[str, ...]
    css: str = ""


def invoice_document(
    invoice: Invoice | Adjustment,
    customer: Customer,
    seller: Seller,
    issue_date: date,
    margin: MarginRow | None = None,
) -> dict:
    """The document to render (JSON, the PDF's frozen input) from an invoice or adjustment, the
    customer's config entry, the seller, and optionally the customer's margin row (usage by
    model and action tier, in credits: its cost is ours, COGS, and stays in the margin report)."""
    by_model, by_action = (margin.by_model, margin.by_action) if margin else ([], [])
    return {
        **invoice.to_json(),
        "usage_by_model": [{"model": r.model, "credits": r.credits} for r in by_model],
        "usage_by_action": [{"action": r.action, "credits": r.credits} for r in by_action],
        "kind": getattr(invoice, "kind", "invoice"),
        "refers_to": getattr(invoice, "refers_to", None),
        "customer": {"name": customer.name, "email": customer.email or None,
                     "address": customer.address or None, "tax_rate": str(customer.tax_rate)},
        "seller": seller.as_dict(),
        "issue_date": issue_date.isoformat(),
        "due_date": seller.due_date(issue_date).isoformat(),
    }


def invoice_view(document: dict) -> dict:
    """Validate `document` and return the template context (all figures as display text)."""
    doc = parse_document(document)
    issue_date = doc.issue_date or add_months(doc.month, 1)
    return {
        **_identity(doc),
        "org_id": doc.org_id,
        "period": _period(doc.month),
        "issue_date": _long_date(issue_date),
        "due_date": _long_date(doc.due_date or doc.seller.due_date(issue_date)),
        "created": f"{issue_date.isoformat()}T00:00:00Z",
        "currency": doc.currency,
        "seller": doc.seller,
        "seller_address": _address_lines(doc.seller.address),
        "customer_name": doc.customer.name,
        "customer_email": doc.customer.email,
        "customer_address": _address_lines(doc.customer.address),
        "tax_label": f"Tax ({percent(doc.customer.tax_rate)})",
        "lines": [Row(line.description, (grouped(line.quantity), grouped(line.unit_price), grouped(line.amount)))
                  for line in doc.lines],
        "subtotal": grouped(doc.subtotal),
        "tax": grouped(doc.tax),
        "total": grouped(doc.total),
        "credits": _credit_rows(doc.credits, doc.month) if doc.credits else [],
        "usage_by_model": [Row(u.model, (grouped(u.credits),))
                           for u in sorted(doc.usage_by_model, key=lambda u: (u.model, u.credits))],
        "usage_by_action": [Row(u.action, (grouped(u.credits),))
                            for u in sorted(doc.usage_by_action, key=lambda u: (u.action, u.credits))],
    }


def _identity(doc: InvoiceDocument) -> dict:
    """Kind, title, status and numbers of the document."""
    return {"kind": doc.kind, "title": TITLES[doc.kind], "draft": doc.status == "draft",
            "status": doc.status.capitalize(), "number": doc.number, "refers_to": doc.refers_to}


def grouped(value: Decimal | int) -> str:
    """A figure as printed: its own decimals, thousands separated ('-1,234.50', '12,500')."""
    return f"{value:,}"


def percent(rate: Decimal) -> str:
    """A rate as a percentage without trailing zeros: 0.0825 -> '8.25%'."""
    text = f"{rate * 100:f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"


def _long_date(day: date) -> str:
    return f"{day.day} {MONTH_NAMES[day.month - 1]} {day.year}"


def month_name(month: date) -> str:
    return f"{MONTH_NAMES[month.month - 1]} {month.year}"


def _period(month: date) -> str:
    last = add_months(month, 1).toordinal() - 1
    return f"{month.day} – {_long_date(date.fromordinal(last))}"


def _address_lines(address: str | None) -> list[str]:
    return [part.strip() for part in (address or "").splitlines() if part.strip()]


def _credit_rows(c: CreditSummary, month: date) -> list[Row]:
    """The credit summary as a signed column that adds up to the closing balance."""
    previous, following = month_name(add_months(month, -1)), month_name(add_months(month, 1))
    return [
        Row("Opening balance", (grouped(c.opening),), "balance"),
        Row(f"incl. rolled over from {previous}", (grouped(c.rolled_over_in),), "note"),
        Row("Plan credits granted", (_signed(c.granted),)),
        Row("Credits purchased", (_signed(c.purchased),)),
        Row("Credits consumed", (_signed(-c.consumed),)),
        Row("Overage (consumed beyond balance)", (_signed(c.overage),)),
        Row("Credits expired", (_signed(-c.expired),)),
        Row("Closing balance", (grouped(c.closing),), "balance"),
        Row(f"incl. rolling over to {following}", (grouped(c.rolled_over_out),), "note"),
    ]


def _signed(value: int) -> str:
    return f"{value:+,}" if value else "0"


# --- The document's schema ---------------------------------------------------------------------


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _month(value: Any) -> date:
    try:
        return parse_month(value)
    except (ValueError, AttributeError):
        raise PydanticCustomError("document", "{problem}",
                                  {"problem": f"is not a month (YYYY-MM): {value!r}"}) from None


def _day(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("document", "is not a date (YYYY-MM-DD): {value}", {"value": repr(value)}) from None


DocText = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
OptionalText = Annotated[DocText | None, BeforeValidator(_blank_is_none)]
Day = Annotated[date | None, BeforeValidator(_day)]
_LENIENT = ConfigDict(extra="ignore", frozen=True)


class DocumentCustomer(BaseModel):
    model_config = _LENIENT
    name: DocText
    email: OptionalText = None
    address: OptionalText = None
    tax_rate: DecimalText = Decimal(0)


class ModelUsage(BaseModel):
    """Credits used of one model; a `cost_usd` (COGS, in documents frozen before invoices
    stopped showing it) is ignored, never printed."""

    model_config = _LENIENT
    model: DocText
    credits: Annotated[int, Strict()]


class ActionUsage(BaseModel):
    """Credits used at one action tier (a `cost_usd`, as for ModelUsage, is ignored)."""

    model_config = _LENIENT
    action: DocText
    credits: Annotated[int, Strict()]


class InvoiceDocument(BaseModel):
    """What an invoice PDF is rendered from: a SPEC §6 invoice (or adjustment) with its kind,
    dates, seller, customer and usage; checked for consistency (totals, credits, numbers)."""

    model_config = _LENIENT
    org_id: DocText
    month: Annotated[date, BeforeValidator(_month)]
    kind: Literal["invoice", "adjustment", "credit_note"] = "invoice"
    status: Literal["draft", "final"]
    number: OptionalText = None
    refers_to: OptionalText = None
    currency: DocText
    issue_date: Day = None
    due_date: Day = None
    seller: Annotated[Seller, BeforeValidator(lambda v: Seller() if v is None else v)] = Seller()
    customer: DocumentCustomer
    lines: list[InvoiceLine]
    subtotal: Money
    tax: Money
    total: Money
    credits: CreditSummary | None = None
    usage_by_model: Annotated[list[ModelUsage], BeforeValidator(lambda v: v or [])] = []
    usage_by_action: Annotated[list[ActionUsage], BeforeValidator(lambda v: v or [])] = []

    @model_validator(mode="after")
    def _consistent(self) -> InvoiceDocument:
        c = self.credits
        problems = [
            self.status == "final" and not self.number and "a final document needs its `number`",
            self.kind != "invoice" and not self.refers_to and f"a {TITLES[self.kind].lower()} needs `refers_to`",
            sum((line.amount for line in self.lines), Decimal(0)) != self.subtotal
            and f"subtotal {self.subtotal} is not the sum of the line amounts",
            self.subtotal + self.tax != self.total
            and f"total {self.total} is not subtotal {self.subtotal} + tax {self.tax}",
            c and c.opening + c.granted + c.purchased - c.consumed + c.overage - c.expired != c.closing
            and "credits do not balance: opening + granted + purchased - (consumed - overage) - expired = "
            f"{c.opening + c.granted + c.purchased - c.consumed + c.overage - c.expired}, closing = {c.closing}",
        ]
        problem = next((p for p in problems if p), None)
        if problem:
            raise PydanticCustomError("document", "{problem}", {"problem": problem})
        return self


def parse_document(document: Any) -> InvoiceDocument:
    """`document` validated, or an InvoiceDocumentError naming the document and the field."""
    if not isinstance(document, dict):
        raise InvoiceDocumentError(f"an invoice document is a JSON object, got {type(document).__name__}")
    try:
        return InvoiceDocument.model_validate(document)
    except ValidationError as exc:
        where = f"invoice {document.get('org_id')!r} {document.get('month')!r}"
        raise InvoiceDocumentError(f"{where}: {_problem(exc.errors()[0])}") from None


_MESSAGES = {
    "missing": "is required",
    "string_type": "must be non-empty text, got {input!r}",
    "string_too_short": "must be non-empty text, got {input!r}",
    "literal_error": "must be one of {expected}, got {input!r}",
    "int_type": "must be an integer, got {input!r}",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dataclass_type": "must be an object",
    "greater_than_equal": "must be at least {ge}, got {input!r}",
    "less_than_equal": "must be at most {le}, got {input!r}",
}


def _problem(error: dict) -> str:
    """lines[0]: `unit_price` is not a decimal: 'x'"""
    *path, field = error["loc"] or ("",)
    places = "".join(f"[{step}]" if isinstance(step, int) else f": {step}" for step in path).removeprefix(": ")
    if isinstance(field, int):
        places, field = f"{places}[{field}]", None
    template = _MESSAGES.get(error["type"])
    ctx = {**error.get("ctx", {}), "input": error.get("input")}
    if "expected" in ctx:
        ctx["expected"] = ctx["expected"].replace("'", "").replace(" or ", ", ")
    text = template.format(**ctx) if template else error["msg"]
    subject = f"`{field}` {text}" if field else text
    return f"{places}: {subject}" if places else subject
