"""Delivery: invoices e-mailed with their PDF (an outbox in the billing database, exactly one
Message-ID per document), balance alerts by e-mail and signed webhooks, and finance's alert of
customers below the target ratio (docs/delivery.md)."""
