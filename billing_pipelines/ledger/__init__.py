"""The credit ledger of SPEC §2-3: grants, consumption, overage, expiry and rollover."""

from billing_pipelines.ledger.consumption import CreditSummary, Ledger, run_ledger
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA, with_ledger_time
from billing_pipelines.ledger.grants import Grant

__all__ = ["BILLED_EVENT_SCHEMA", "CreditSummary", "Grant", "Ledger", "run_ledger", "with_ledger_time"]
