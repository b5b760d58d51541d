"""The monthly ``rate_limit_simulation`` asset, built for the lead's definitions.

(No ``from __future__ import annotations``: Dagster reads the asset's annotations at runtime.)
"""

from typing import Callable

import dagster as dg
import polars as pl

from billing_pipelines.config import BillingConfig
from billing_pipelines.ratelimit.simulation import rate_limit_simulation


def build_rate_limit_simulation_asset(
    events: dg.AssetKey | str,
    config: Callable[[], BillingConfig],
    partitions_def: dg.PartitionsDefinition | None = None,
    group_name: str = "margin",
) -> dg.AssetsDefinition:
    """An asset replaying the upstream asset `events` (one month's billed events, a Polars frame
    with the columns `simulation.EVENT_COLUMNS`) through the plans of `config()`; partitioned
    like the month it reads. Per-org rows, with totals as materialization metadata."""

    @dg.asset(
        name="rate_limit_simulation",
        ins={"events": dg.AssetIn(key=dg.AssetKey.from_coercible(events))},
        partitions_def=partitions_def,
        group_name=group_name,
        description="Requests the plan limits would have degraded or rejected, COGS saved, revenue at risk.",
    )
    def _asset(events: pl.DataFrame) -> dg.Output[pl.DataFrame]:
        report = rate_limit_simulation(events, config())
        totals = {c: report[c].sum() for c in ("requests", "degraded", "rejected")}
        money = {c: str(report[c].sum()) for c in ("cogs_saved_usd", "revenue_at_risk")}
        return dg.Output(report, metadata={**totals, **money, "orgs": report.height})

    return _asset
