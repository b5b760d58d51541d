"""The month close (SPEC §2-§6): from the landing dates a billing month takes in to its credit
ledger, invoices and margin.

1. `usage`: the month's billed events, collected once from the billed usage of its landing dates
   and the events the month before handed over (`month_usage`).
2. `ledger`: the credit ledger of one customer shard, from the state the previous month's close
   of that shard left and the month's events only (`credit_ledger`, one Dagster run per month and
   shard, so Kubernetes runs the shards in parallel pods).
3. `documents`: the union of the shards: draft invoices (billing database), the margin report and
   the credit-tier advisor (`draft_invoices`, `margin_report`).
This package imports the ledger, invoicing and margin domains; none of them imports it.
"""
