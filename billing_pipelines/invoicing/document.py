"""An invoice document (the SPEC §6 invoice JSON, extended for the PDF), checked and formatted.

`invoice_view(document)` validates the document and returns what the template prints: every
figure as display text. Money stays Decimal until it is formatted; nothing is rounded here, the
document's own strings are printed (with thousands separators).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from billing_pipelines.config import ConfigError, Customer
from billing_pipelines.invoicing.seller import Seller, seller_from_dict
from billing_pipelines.periods import add_months, parse_month

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
TITLES = {"invoice": "Invoice", "adjustment": "Adjustment", "credit_note": "Credit note"}
STATUSES = ("draft", "final")
CREDIT_FIELDS = ("opening", "rolled_over_in", "granted", "purchased", "consumed", "overage",
                 "expired", "rolled_over_out", "closing")


class InvoiceDocumentError(ValueError):
    """An invoice document that cannot be rendered; the message names the field."""


@dataclass(frozen=True)
class Row:
    """One printed row: a label and its display values."""

    label: str
    values: tuple[str, ...]
    css: str = ""


def invoice_document(
    invoice: dict,
    customer: Customer,
    seller: Seller,
    issue_date: date,
    margin: dict | None = None,
    kind: str = "invoice",
    refers_to: str | None = None,
) -> dict:
    """The document to render from a SPEC §6 invoice object, the customer's config entry, the
    seller, and optionally the customer's SPEC §6 margin row (usage by model and action tier, in
    credits: its cost is ours, COGS, and stays in the margin report)."""
    usage = {
        field: [{name: row[name], "credits": row["credits"]}
                for row in (margin or {}).get(source, [])]
        for field, source, name in (("usage_by_model", "by_model", "model"),
                                    ("usage_by_action", "by_action", "action"))
    }
    return {
        **invoice,
        **usage,
        "kind": kind,
        "refers_to": refers_to,
        "customer": {"name": customer.name, "email": customer.email or None,
                     "address": customer.address or None, "tax_rate": str(customer.tax_rate)},
        "seller": seller.as_dict(),
        "issue_date": issue_date.isoformat(),
        "due_date": seller.due_date(issue_date).isoformat(),
    }


def invoice_view(document: dict) -> dict:
    """Validate `document` and return the template context (all figures as display text)."""
    if not isinstance(document, dict):
        raise InvoiceDocumentError(f"an invoice document is a JSON object, got {type(document).__name__}")
    doc = _Reader(document)
    month = doc.month()
    seller = _seller(document.get("seller"), doc.where)
    issue_date = doc.date("issue_date", default=add_months(month, 1))
    customer = _Reader(doc.mapping("customer"), f"{doc.where}: customer")
    return {
        **_identity(doc),
        "org_id": doc.text("org_id"),
        "period": _period(month),
        "issue_date": _long_date(issue_date),
        "due_date": _long_date(doc.date("due_date", default=seller.due_date(issue_date))),
        "created": f"{issue_date.isoformat()}T00:00:00Z",
        "currency": doc.text("currency"),
        "seller": seller,
        "seller_address": _address_lines(seller.address),
        "customer_name": customer.text("name"),
        "customer_email": customer.optional_text("email"),
        "customer_address": _address_lines(customer.optional_text("address")),
        "tax_label": f"Tax ({percent(customer.decimal('tax_rate', default=Decimal(0)))})",
        **_amounts(doc),
        "credits": _credit_rows(doc, month),
        "usage_by_model": _usage_rows(doc, "usage_by_model", "model"),
        "usage_by_action": _usage_rows(doc, "usage_by_action", "action"),
    }


def _identity(doc: _Reader) -> dict:
    """Kind, title, status and numbers of the document, checked against each other."""
    kind = doc.choice("kind", tuple(TITLES), default="invoice")
    status = doc.choice("status", STATUSES)
    number, refers_to = doc.optional_text("number"), doc.optional_text("refers_to")
    if status == "final" and not number:
        raise InvoiceDocumentError(f"{doc.where}: a final document needs its `number`")
    if kind != "invoice" and not refers_to:
        raise InvoiceDocumentError(f"{doc.where}: a {TITLES[kind].lower()} needs `refers_to`")
    return {"kind": kind, "title": TITLES[kind], "draft": status == "draft", "status": status.capitalize(),
            "number": number, "refers_to": refers_to}


def _amounts(doc: _Reader) -> dict:
    """Line rows, subtotal, tax and total; the subtotal must be the lines' sum, the total subtotal + tax."""
    lines = [_line(doc, i, line) for i, line in enumerate(doc.items("lines"))]
    subtotal, tax, total = doc.money("subtotal"), doc.money("tax"), doc.money("total")
    if sum((amount for *_, amount in lines), Decimal(0)) != subtotal:
        raise InvoiceDocumentError(f"{doc.where}: subtotal {subtotal} is not the sum of the line amounts")
    if subtotal + tax != total:
        raise InvoiceDocumentError(f"{doc.where}: total {total} is not subtotal {subtotal} + tax {tax}")
    return {
        "lines": [Row(description, (qty, unit, grouped(amount))) for description, qty, unit, amount in lines],
        "subtotal": grouped(subtotal),
        "tax": grouped(tax),
        "total": grouped(total),
    }


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


def _seller(raw: Any, where: str) -> Seller:
    if raw is None:
        return Seller()
    if not isinstance(raw, dict):
        raise InvoiceDocumentError(f"{where}: `seller` must be an object")
    try:
        return seller_from_dict(raw, where=f"{where}: seller")
    except ConfigError as exc:
        raise InvoiceDocumentError(str(exc)) from exc


def _line(doc: _Reader, index: int, raw: Any) -> tuple[str, str, str, Decimal]:
    if not isinstance(raw, dict):
        raise InvoiceDocumentError(f"{doc.where}: lines[{index}] must be an object")
    line = _Reader(raw, f"{doc.where}: lines[{index}]")
    line.text("kind")
    quantity = line.decimal("quantity")
    unit_price = line.decimal("unit_price")
    return line.text("description"), grouped(quantity), grouped(unit_price), line.money("amount")


def _credit_rows(doc: _Reader, month: date) -> list[Row]:
    """The credit summary as a signed column that adds up to the closing balance."""
    raw = doc.optional_mapping("credits")
    if raw is None:
        return []
    summary = _Reader(raw, f"{doc.where}: credits")
    c = {name: summary.integer(name) for name in CREDIT_FIELDS}
    moved = c["granted"] + c["purchased"] - c["consumed"] + c["overage"] - c["expired"]
    if c["opening"] + moved != c["closing"]:
        raise InvoiceDocumentError(
            f"{doc.where}: credits do not balance: opening + granted + purchased - (consumed - overage)"
            f" - expired = {c['opening'] + moved}, closing = {c['closing']}")
    previous, following = month_name(add_months(month, -1)), month_name(add_months(month, 1))
    return [
        Row("Opening balance", (grouped(c["opening"]),), "balance"),
        Row(f"incl. rolled over from {previous}", (grouped(c["rolled_over_in"]),), "note"),
        Row("Plan credits granted", (_signed(c["granted"]),)),
        Row("Credits purchased", (_signed(c["purchased"]),)),
        Row("Credits consumed", (_signed(-c["consumed"]),)),
        Row("Overage (consumed beyond balance)", (_signed(c["overage"]),)),
        Row("Credits expired", (_signed(-c["expired"]),)),
        Row("Closing balance", (grouped(c["closing"]),), "balance"),
        Row(f"incl. rolling over to {following}", (grouped(c["rolled_over_out"]),), "note"),
    ]


def _signed(value: int) -> str:
    return f"{value:+,}" if value else "0"


def _usage_rows(doc: _Reader, field: str, name_field: str) -> list[Row]:
    """Usage rows (name, credits) sorted by name; a `cost_usd` (COGS, in documents frozen
    before invoices stopped showing it) is never printed."""
    rows = []
    for index, raw in enumerate(doc.items(field, required=False)):
        if not isinstance(raw, dict):
            raise InvoiceDocumentError(f"{doc.where}: {field}[{index}] must be an object")
        usage = _Reader(raw, f"{doc.where}: {field}[{index}]")
        rows.append((usage.text(name_field), usage.integer("credits")))
    return [Row(name, (grouped(used),)) for name, used in sorted(rows)]


class _Reader:
    """Typed access to one JSON object's fields, with errors that name the field."""

    def __init__(self, raw: dict, where: str | None = None):
        self.raw = raw
        self.where = where or f"invoice {raw.get('org_id')!r} {raw.get('month')!r}"

    def _get(self, key: str, required: bool = True) -> Any:
        value = self.raw.get(key)
        if value is None and required:
            raise InvoiceDocumentError(f"{self.where}: `{key}` is required")
        return value

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be non-empty text, got {value!r}")
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        """The text, or None where the field is absent, null or blank."""
        value = self._get(key, required=False)
        blank = value is None or (isinstance(value, str) and not value.strip())
        return None if blank else self.text(key)

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self._get(key, required=default is None) or default
        if value not in allowed:
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def decimal(self, key: str, default: Decimal | None = None) -> Decimal:
        value = self._get(key, required=default is None)
        if value is None:
            return default
        if isinstance(value, (bool, float)) or not isinstance(value, (str, int, Decimal)):
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be a decimal string, got {value!r}")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise InvoiceDocumentError(f"{self.where}: `{key}` is not a decimal: {value!r}") from exc
        if not number.is_finite():
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be finite, got {value!r}")
        return number

    def money(self, key: str) -> Decimal:
        number = self.decimal(key)
        if number.as_tuple().exponent != -2:
            raise InvoiceDocumentError(f"{self.where}: `{key}` must have exactly 2 decimals, got {number}")
        return number

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be an integer, got {value!r}")
        return value

    def date(self, key: str, default: date) -> date:
        value = self._get(key, required=False)
        if value is None or isinstance(value, date):
            return value or default
        try:
            return date.fromisoformat(str(value))
        except ValueError as exc:
            raise InvoiceDocumentError(f"{self.where}: `{key}` is not a date (YYYY-MM-DD): {value!r}") from exc

    def month(self) -> date:
        try:
            return parse_month(self.text("month"))
        except ValueError as exc:
            raise InvoiceDocumentError(f"{self.where}: {exc}") from exc

    def mapping(self, key: str) -> dict:
        value = self.optional_mapping(key)
        if value is None:
            raise InvoiceDocumentError(f"{self.where}: `{key}` is required")
        return value

    def optional_mapping(self, key: str) -> dict | None:
        value = self._get(key, required=False)
        if value is not None and not isinstance(value, dict):
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be an object")
        return value

    def items(self, key: str, required: bool = True) -> list:
        value = self._get(key, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvoiceDocumentError(f"{self.where}: `{key}` must be a list")
        return value
