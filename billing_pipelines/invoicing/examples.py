"""Realistic, internally consistent invoice documents for the docs image, tests and benchmark."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
EXAMPLE_SELLER = {
    "name": "Northwind AI Ltd",
    "address": "10 Market Street\nLondon EC1A 1AA\nUnited Kingdom",
    "email": "billing@northwind-ai.example",
    "tax_id": "GB 284 1937 55",
    "payment_terms_days": 30,
}
EXAMPLE_CUSTOMER = {
    "name": "Acme Corp",
    "email": "billing@acme.example",
    "address": "1 Main Street\nSpringfield, IL 62701\nUnited States",
    "tax_rate": "0.20",
}


def line(kind: str, description: str, quantity: str, unit_price: str) -> dict:
    """One invoice line; amount = round(quantity × unit_price, 2)."""
    amount = (Decimal(quantity) * Decimal(unit_price)).quantize(CENT, ROUND_HALF_UP)
    return {"kind": kind, "description": description, "quantity": quantity,
            "unit_price": unit_price, "amount": str(amount)}


def example_invoice(
    org_id: str = "acme",
    customer: dict | None = None,
    status: str = "final",
    number: str | None = "INV-2026-000042",
    extra_purchases: int = 0,
) -> dict:
    """A November 2026 invoice for a Pro customer: plan fee, a credit purchase, overage, plus
    `extra_purchases` more purchase lines (to make long invoices)."""
    customer = dict(customer or EXAMPLE_CUSTOMER)
    lines = [
        line("plan_fee", "Pro plan, November 2026", "1", "49.00"),
        line("credit_purchase", "Credit pack p-1001: 10,000 credits (10 Nov 2026)", "1", "100.00"),
        *(line("credit_purchase", f"Credit pack p-{2000 + i}: 500 credits", "1", f"{5 + i % 7}.{i % 100:02d}")
          for i in range(extra_purchases)),
        line("overage", "Overage: credits beyond balance", "1250", "0.0120"),
    ]
    subtotal = sum((Decimal(entry["amount"]) for entry in lines), Decimal(0))
    tax = (subtotal * Decimal(customer["tax_rate"])).quantize(CENT, ROUND_HALF_UP)
    return {
        "org_id": org_id,
        "month": "2026-11",
        "status": status,
        "number": number,
        "currency": "USD",
        "kind": "invoice",
        "issue_date": "2026-12-04",
        "due_date": "2027-01-03",
        "seller": dict(EXAMPLE_SELLER),
        "customer": customer,
        "lines": lines,
        "subtotal": str(subtotal),
        "tax": str(tax),
        "total": str(subtotal + tax),
        "cogs_usd": "41.3170",
        "credits": {"opening": 1800, "rolled_over_in": 1800, "granted": 5000, "purchased": 10000,
                    "consumed": 16250, "overage": 1250, "expired": 0, "rolled_over_out": 0,
                    "closing": 1800},
        "usage_by_model": [
            {"model": "frontier-large", "credits": 9850},
            {"model": "small-fast", "credits": 6400},
        ],
        "usage_by_action": [
            {"action": "complex", "credits": 8750},
            {"action": "document", "credits": 3300},
            {"action": "simple", "credits": 4200},
        ],
    }
