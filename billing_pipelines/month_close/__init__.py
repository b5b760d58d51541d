"""The month close (SPEC §2-§6): from the landing dates a billing month takes in to its credit
ledger, invoices and margin.

1. `usage`: the month's landing dates, pinned (`month_landing_dates`), then the month's billed
   events of one customer shard, collected once from the billed usage of those dates and the
   events the shard's month before handed over (`month_usage`).
2. `ledger`: the credit ledger of one customer shard, from the state the previous month's close
   of that shard left and the shard's events of the month only (`credit_ledger`). A shard's
   collection and ledger are one Dagster run per month and shard, so Kubernetes runs the shards
   in parallel pods.
3. `documents`: the union of the shards: draft invoices (billing database), the margin report and
   the credit-tier advisor (`draft_invoices`, `margin_report`).
This package imports the ledger, invoicing and margin domains; none of them imports it.
"""
