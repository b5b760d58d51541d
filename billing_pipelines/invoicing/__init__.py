"""Invoicing: draft invoices (SPEC §4, §6), invoice documents, PDF rendering and storage keys."""
