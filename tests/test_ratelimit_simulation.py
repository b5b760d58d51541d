"""The monthly rate-limit simulation: a hand-checked replay, and the real Azure trace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipelines.ratelimit.simulation import rate_limit_simulation, replay_rate_limits
from tests.ratelimit_support import write_config

TRACE = Path("/work/shared/data/azure-llm-trace-2023/conversation.csv")
T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
DECIMAL = pl.Decimal(38, 12)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("config"))


def events(rows) -> pl.DataFrame:
    """rows: (org_id, model, seconds after T0, latency_ms, credits); 1,000 tokens in and out."""
    return pl.DataFrame(
        [(org, model, T0 + timedelta(seconds=s), latency, 1000, 1000, credits) for org, model, s, latency,
         credits in rows],
        schema={"org_id": pl.String, "model": pl.String, "ts": pl.Datetime("us", "UTC"), "latency_ms": pl.Int64,
                "input_tokens": pl.Int64, "output_tokens": pl.Int64, "credits": pl.Int64},
        orient="row",
    )


# solo: one slot, one request a minute per model, no burst.
HAND_CHECKED = [
    ("solo", "frontier-large", 0, 1000, 5),   # allow
    ("solo", "frontier-large", 2, 1000, 5),   # degrade to balanced-medium: frontier used this minute
    ("solo", "frontier-large", 2.5, 100, 5),  # reject: the slot is held until 3 s
    ("solo", "frontier-large", 3, 1000, 5),   # degrade to small-fast: slot freed at 3 s exactly
    ("solo", "frontier-large", 5, 1000, 5),   # reject: the whole chain used this minute
    ("acme", "small-fast", 5, 60000, 1),      # allow
]


def test_a_hand_checked_replay(config):
    replayed = replay_rate_limits(events(HAND_CHECKED), config)
    assert replayed.select("outcome", "served_model", "reason").rows() == [
        ("allow", "frontier-large", ""),
        ("degrade", "balanced-medium", "rate_limited"),
        ("reject", None, "concurrency"),
        ("degrade", "small-fast", "rate_limited"),
        ("reject", None, "rate_limited"),
        ("allow", "small-fast", ""),
    ]
    summary = {row["org_id"]: row for row in rate_limit_simulation(events(HAND_CHECKED), config).to_dicts()}
    assert list(summary) == ["acme", "solo"]
    assert summary["solo"] == {
        "org_id": "solo", "plan": "solo", "requests": 5, "allowed": 1, "degraded": 2, "rejected": 2,
        "rejected_rate": 1, "rejected_concurrency": 1, "credits_rejected": 10,
        "cogs_usd": Decimal("0.0900"),
        # (0.018 - 0.004) + (0.018 - 0.00075) = 0.03125, half up
        "cogs_saved_usd": Decimal("0.0313"),
        "revenue_at_risk": Decimal("1.00"),  # 10 credits x 10.00 / 100
    }
    assert (summary["acme"]["allowed"], summary["acme"]["cogs_saved_usd"]) == (1, Decimal("0.0000"))


def test_revenue_at_risk_uses_recognized_revenue_when_given(config):
    frame = events(HAND_CHECKED).with_columns(revenue=pl.lit(Decimal("0.333335"), dtype=DECIMAL))
    solo = rate_limit_simulation(frame, config).filter(pl.col("org_id") == "solo")
    assert solo["revenue_at_risk"].to_list() == [Decimal("0.67")]  # 0.66667 exactly, half up


def test_the_replay_follows_a_plan_change(config):
    """From 00:00 UTC of 2026-11-04 climber moves up from solo (1 slot) to pro (10 slots) and
    sinker down from pro to solo. Each sends two overlapping requests of 5 credits the minute
    before the change and two after it."""
    before = (datetime(2026, 11, 3, 23, 59, tzinfo=UTC) - T0).total_seconds()
    rows = [(org, "embed-v3", before + minute + s, 30_000, 5)
            for org in ("climber", "sinker") for minute in (0, 60) for s in (0, 1)]
    replayed = replay_rate_limits(events(rows), config)
    outcomes = {org[0]: part.select("outcome", "reason").rows()
                for org, part in replayed.partition_by("org_id", as_dict=True).items()}
    allow, full = ("allow", ""), ("reject", "concurrency")
    assert outcomes == {"climber": [allow, full, allow, allow], "sinker": [allow, allow, allow, full]}
    summary = {r["org_id"]: r for r in rate_limit_simulation(events(rows), config).to_dicts()}
    assert [(r["plan"], r["rejected"], r["revenue_at_risk"]) for r in summary.values()] == [
        ("pro", 1, Decimal("0.50")),  # 5 credits at solo's 10.00 / 100 on 2026-11-03
        ("solo", 1, Decimal("0.50")),  # and on 2026-11-04, not at pro's 49.00 / 5000
    ]


def test_bad_events_are_clear_errors(config):
    with pytest.raises(ValueError, match="latency_ms"):
        rate_limit_simulation(events(HAND_CHECKED).drop("latency_ms"), config)
    with pytest.raises(ValueError, match="unknown org.*nobody"):
        rate_limit_simulation(events([("nobody", "small-fast", 0, 1, 1)]), config)


def trace_events(config) -> pl.DataFrame:
    """The real Azure conversation trace moved to November 2026, its requests dealt round-robin
    to three orgs on frontier-large. The trace has no latencies: 40 ms + 10 ms per generated token."""
    if not TRACE.is_file():
        pytest.skip(f"the Azure trace is not at {TRACE}")
    raw = pl.read_csv(TRACE)
    orgs = ["acme", "globex", "initech"]
    return raw.select(
        org_id=pl.int_range(pl.len()).mod(3).replace_strict(dict(enumerate(orgs)), return_dtype=pl.String),
        model=pl.lit("frontier-large"),
        ts=pl.col("TIMESTAMP").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", time_zone="UTC")
        + (T0.replace(day=16) - datetime(2023, 11, 16, tzinfo=UTC)),
        latency_ms=40 + 10 * pl.col("GeneratedTokens"),
        input_tokens="ContextTokens",
        output_tokens="GeneratedTokens",
        credits=pl.lit(1),
    )


def _cost(rate) -> pl.Expr:
    return (pl.col("input_tokens").cast(DECIMAL) * rate.input_usd_per_1k
            + pl.col("output_tokens").cast(DECIMAL) * rate.output_usd_per_1k) / 1000


def test_the_real_trace_replays_consistently(config):
    trace = trace_events(config)
    summary = rate_limit_simulation(trace, config)
    assert summary["org_id"].to_list() == ["acme", "globex", "initech"]
    assert summary["requests"].sum() == trace.height
    for row in summary.to_dicts():
        assert row["allowed"] + row["degraded"] + row["rejected"] == row["requests"]
        assert row["rejected_rate"] + row["rejected_concurrency"] == row["rejected"]
    free, enterprise = (summary.filter(pl.col("org_id") == org).row(0, named=True) for org in ("initech", "globex"))
    assert enterprise["rejected"] == 0 and free["degraded"] > 0 and free["rejected"] > 0
    assert free["revenue_at_risk"] == 0, "free credits earn nothing"

    replayed = replay_rate_limits(trace, config)
    degraded = replayed.filter(pl.col("outcome") == "degrade")
    frontier = config.price_book.rate_at("frontier-large", T0.date())
    saved = Decimal(0)
    for served, part in degraded.partition_by("served_model", as_dict=True).items():
        rate = config.price_book.rate_at(served[0], T0.date())
        saved += part.select(_cost(frontier) - _cost(rate)).to_series().sum()
    assert free["cogs_saved_usd"] == saved.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)

    alone = rate_limit_simulation(trace.filter(pl.col("org_id") == "initech"), config)
    assert alone.row(0, named=True) == free, "orgs do not interfere"


def test_a_month_without_events_reports_no_org(config):
    report = rate_limit_simulation(events([]), config)
    assert report.height == 0 and report.columns[-1] == "revenue_at_risk"
