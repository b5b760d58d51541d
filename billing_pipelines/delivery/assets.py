"""Dagster side of delivery: `invoice_delivery` (recorded by the finalize_invoices job's last op:
queue the month's documents, send what is due), `message_delivery` and the `delivery_sensor` that
runs it while anything is due (retries after their backoff, alerts, adjustments), each showing
sent / failed / pending."""

import hashlib
import json
from datetime import UTC, datetime

import dagster as dg

from billing_pipelines.delivery.outbox import queue_documents
from billing_pipelines.delivery.service import deliver_due, delivery_engine, due_attempts, queue_counts
from billing_pipelines.invoicing.filing import Issuer
from billing_pipelines.partitions import billing_months
from billing_pipelines.resources import BillingSettings

GROUP = "delivery"
SENSOR_INTERVAL_SECONDS = 30
CHECK = "nothing_failing"
OWNERS = ["team:finance"]
TAGS = {"domain": "delivery"}


def _delivery_metadata(billing: BillingSettings, now: datetime) -> tuple[dict, dict]:
    """Deliver what is due; the counts by channel and status, and what is failing."""
    sent = deliver_due(billing, now)
    counts = queue_counts(delivery_engine(billing))
    failing = {channel: c["failed"] for channel, c in counts.items() if c["failed"]}
    metadata = {f"{channel}_{status}": n for channel, c in counts.items() for status, n in c.items()}
    metadata.update({f"{channel}_{what}_now": n for channel, c in sent.items() for what, n in c.items()})
    metadata["failing"] = dg.MetadataValue.json(failing)
    return metadata, failing


invoice_delivery = dg.AssetSpec(
    "invoice_delivery", partitions_def=billing_months, deps=["finalized_invoices"], group_name="invoice_finalization",
    kinds={"email"}, owners=OWNERS, tags=TAGS,
    description="Each final invoice, adjustment and credit note of the month e-mailed with its PDF to the customer, "
    "once (an outbox in the billing database, a Message-ID derived from its number). Recorded by the "
    "finalize_invoices job after finalization; failures are retried with backoff by the delivery_sensor.",
)


@dg.op(description="Queue the finalized month's documents for e-mail (once each) and send what is due; "
       "records invoice_delivery with the counts.")
def deliver_month_invoices(context: dg.OpExecutionContext, month: str, billing: BillingSettings) -> int:
    now = datetime.now(UTC)
    queued = queue_documents(delivery_engine(billing), Issuer.of(billing), month, now)
    metadata, failing = _delivery_metadata(billing, now)
    if failing:
        context.log.warning(f"deliveries failing (retried with backoff by the delivery_sensor): {failing}")
    context.log_event(dg.AssetMaterialization(asset_key="invoice_delivery", partition=month,
                                              metadata={"documents_queued": queued, **metadata}))
    return queued


@dg.asset(group_name=GROUP, kinds={"email"}, owners=OWNERS, tags=TAGS,
          check_specs=[dg.AssetCheckSpec(CHECK, asset="message_delivery")],
          description="Send every e-mail (invoices, alerts, finance's) and webhook that is due: new ones and "
          "failed ones whose backoff is over; counts by status.")
def message_delivery(billing: BillingSettings):
    metadata, failing = _delivery_metadata(billing, datetime.now(UTC))
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=CHECK, passed=not failing, severity=dg.AssetCheckSeverity.WARN,
        description="failing (retried with backoff): " + json.dumps(failing) if failing else "nothing failing")


deliver_messages = dg.define_asset_job(
    "deliver_messages", selection=[message_delivery], executor_def=dg.in_process_executor,
    description="Send the e-mails and webhooks that are due.")


@dg.sensor(job=deliver_messages, minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="A deliver_messages run whenever e-mails or webhooks are due (run key: what is due).")
def delivery_sensor(context: dg.SensorEvaluationContext, billing: BillingSettings):
    due = due_attempts(delivery_engine(billing), datetime.now(UTC))
    if not due:
        return dg.SkipReason("nothing due")
    return dg.RunRequest(run_key=hashlib.sha256(json.dumps(sorted(due)).encode()).hexdigest()[:16])
