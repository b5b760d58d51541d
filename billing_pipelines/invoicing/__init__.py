"""Draft invoices of SPEC §4 and their JSON (SPEC §6)."""

from billing_pipelines.invoicing.drafts import draft_invoice, invoice_usage

__all__ = ["draft_invoice", "invoice_usage"]
