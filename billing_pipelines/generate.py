"""`billing generate`: a realistic, seeded synthetic landing zone and the config that matches it.

Orgs on free, pro and enterprise plans with their users, a few changing plan or cancelling;
models and action tiers; a diurnal,
bursty arrival pattern and token mix drawn from a real LLM trace (assets/traces); events landing
a little after they happen (some a day or more late, some with a +02:00 offset); redeliveries
within and across days; a small share of bad rows; `.jsonl`, `.jsonl.gz` and `.parquet` files in
gateway subfolders. The same seed gives the same files.
"""

from __future__ import annotations

import gzip
import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from billing_pipelines.paths import resource_dir
from billing_pipelines.periods import add_months
from billing_pipelines.storage.objects import Store

PRICE_BOOK = """\
currency: USD
target_credit_to_cost_ratio: "3.0"
models:
  - {model: frontier-large, effective_from: 2025-01-01, input_usd_per_1k: "0.0030", output_usd_per_1k: "0.0150",
     degrade_to: balanced-medium}
  - {model: frontier-large, effective_from: %(price_cut)s, input_usd_per_1k: "0.0025", output_usd_per_1k: "0.0125",
     degrade_to: balanced-medium}
  - {model: balanced-medium, effective_from: 2025-01-01, input_usd_per_1k: "0.0008", output_usd_per_1k: "0.0032",
     degrade_to: small-fast}
  - {model: small-fast, effective_from: 2025-01-01, input_usd_per_1k: "0.00015", output_usd_per_1k: "0.0006"}
  - {model: embed-v3, effective_from: 2025-01-01, input_usd_per_1k: "0.00002", output_usd_per_1k: "0"}
actions:
  - {action: simple, credits: 1}
  - {action: complex, credits: 5}
  - {action: document, credits: 1, tokens_per_credit: 1000}
  - {action: embedding, credits: 1}
"""

PLANS = """\
plans:
  - plan: free
    monthly_fee: "0.00"
    included_credits: 200
    overage_credit_price: null
    rollover: {max_credits: 0, expires_after_months: 1}
    rate_limits: {concurrent: 2, requests_per_minute: 20, burst_multiplier: 2, burst_seconds: 60}
  - plan: pro
    monthly_fee: "49.00"
    included_credits: 5000
    overage_credit_price: "0.0120"
    rollover: {max_credits: 2500, expires_after_months: 1}
    rate_limits: {concurrent: 10, requests_per_minute: 300, burst_multiplier: 2, burst_seconds: 60}
  - plan: enterprise
    monthly_fee: "2000.00"
    included_credits: 250000
    overage_credit_price: "0.0080"
    rollover: {max_credits: 125000, expires_after_months: 3}
    rate_limits: {concurrent: 50, requests_per_minute: 3000, burst_multiplier: 2, burst_seconds: 60}
"""

NAMES = [
    "Acme Corp", "Globex Corporation", "Initech", "Umbrella Analytics", "Hooli", "Stark Industries",
    "Müller Analytik GmbH", "Sørensen Data ApS", "日本AIラボ株式会社", "Wonka Labs", "Tyrell Systems",
    "Cyberdyne Research", "Aperture Science", "Soylent Foods", "Łódź Robotics", "Öztürk Yazılım",
]
PLAN_MIX = (("free", 0.45, 1.0), ("pro", 0.40, 6.0), ("enterprise", 0.15, 40.0))  # plan, share, traffic weight
ACTIONS = ("simple", "complex", "document", "embedding")
ACTION_P = (0.55, 0.2, 0.15, 0.1)
MODELS = ("small-fast", "balanced-medium", "frontier-large", "embed-v3")
# P(model | action), rows in ACTIONS order, columns in MODELS order.
MODEL_P = np.array([[0.6, 0.4, 0, 0], [0, 0.3, 0.7, 0], [0, 0.7, 0.3, 0], [0, 0, 0, 1.0]])
DIURNAL = 0.35 + np.sin(np.linspace(0, np.pi, 24, endpoint=False) + np.pi / 8) ** 2


@dataclass(frozen=True)
class GeneratorSpec:
    seed: int = 7
    orgs: int = 12
    start: date = date(2026, 10, 1)
    days: int = 35
    events_per_day: int = 4000
    parquet_share: float = 0.4
    gzip_share: float = 0.5  # of the JSON files
    files_per_day: int = 4
    duplicate_rate: float = 0.005
    bad_rate: float = 0.002
    late_rate: float = 0.01


def generate(spec: GeneratorSpec, config_dir: Path, landing: str) -> dict:
    """Write the config to `config_dir` and the landing zone to `landing`; return the counts."""
    rng = np.random.default_rng(spec.seed)
    orgs = _customers(spec, rng)
    changes = _plan_changes(spec, orgs)
    _write_config(spec, orgs, changes, Path(config_dir))
    orgs = orgs.with_columns(end_date=pl.Series([_cancelled(changes, o) for o in orgs["org_id"]], dtype=pl.Date))
    trace = _trace()
    store = Store(landing)
    carry: dict[date, list[pl.DataFrame]] = {}
    stats = {"events": 0, "duplicates": 0, "bad_rows": 0, "files": 0, "landing_dates": 0}
    for n in range(spec.days):
        day = spec.start + timedelta(days=n)
        day_rng = np.random.default_rng([spec.seed, day.toordinal()])
        events = _events(spec, day, orgs, trace, day_rng)
        stats["events"] += events.height
        events, dups = _with_redeliveries(events, spec.duplicate_rate, day_rng)
        stats["duplicates"] += dups
        for landing_day, part in events.partition_by("landing_date", as_dict=True).items():
            carry.setdefault(landing_day[0], []).append(part)
        stats["bad_rows"] += _write_landing_date(store, day, carry.pop(day, []), spec, day_rng, stats)
        stats["landing_dates"] += 1
    return stats


def _customers(spec: GeneratorSpec, rng: np.random.Generator) -> pl.DataFrame:
    plans = rng.choice(len(PLAN_MIX), size=spec.orgs, p=[p[1] for p in PLAN_MIX])
    plans[: min(3, spec.orgs)] = [2, 1, 0][: min(3, spec.orgs)]  # always one of each plan
    names = [NAMES[i] if i < len(NAMES) else f"{NAMES[i % len(NAMES)]} {i // len(NAMES) + 1}" for i in range(spec.orgs)]
    starts = [
        spec.start - timedelta(days=int(rng.integers(1, 45))) if rng.random() < 0.8
        else spec.start + timedelta(days=int(rng.integers(0, max(1, spec.days // 2))))
        for _ in range(spec.orgs)
    ]
    return pl.DataFrame({
        "org_id": [_slug(name) for name in names],
        "name": names,
        "plan": [PLAN_MIX[p][0] for p in plans],
        "weight": [PLAN_MIX[p][2] * float(rng.lognormal(0, 0.5)) for p in plans],
        "start_date": starts,
        "users": [int(rng.integers(3, 40)) for _ in plans],
        "tax_rate": [str(rng.choice(["0", "0.0825", "0.19", "0.20", "0.25"])) for _ in plans],
    })


def _plan_changes(spec: GeneratorSpec, orgs: pl.DataFrame) -> list[tuple[str, date, str | None]]:
    """(org_id, effective_from, plan or None) for a few customers started before the first day:
    free to pro and pro to enterprise mid-month, enterprise to pro on the next month's first day,
    and a pro customer without purchases cancelling (SPEC §7)."""
    earlier = orgs.filter(pl.col("start_date") < spec.start)
    by_plan = {plan: earlier.filter(pl.col("plan") == plan)["org_id"].to_list() for plan, *_ in PLAN_MIX}
    buyers = set(_buyers(orgs))
    cancelling = [o for o in by_plan["pro"][1:] if o not in buyers]
    picks = [
        (by_plan["free"][:1], spec.start + timedelta(days=7), "pro"),
        (by_plan["pro"][:1], spec.start + timedelta(days=14), "enterprise"),
        (by_plan["enterprise"][:1], add_months(spec.start.replace(day=1), 1), "pro"),
        (cancelling[-1:], spec.start + timedelta(days=20), None),
    ]
    return [(org_id, day, plan) for chosen, day, plan in picks for org_id in chosen]


def _cancelled(changes: list[tuple[str, date, str | None]], org_id: str) -> date | None:
    return next((day for org, day, plan in changes if org == org_id and plan is None), None)


def _buyers(orgs: pl.DataFrame) -> list[str]:
    """The customers who buy credits: the first two on pro."""
    return orgs.filter(pl.col("plan") == "pro").head(2)["org_id"].to_list()


_TRANSLITERATE = str.maketrans({"ø": "o", "ł": "l", "ı": "i", "Ł": "L", "Ø": "O", "ß": "ss"})
_ORG_IDS = {"日本AIラボ株式会社": "nihon-ai-lab"}


def _slug(name: str) -> str:
    """A readable ASCII org id for a company name in any script."""
    base = name.rsplit(" ", 1)[0] if name.rsplit(" ", 1)[-1].isdigit() else name
    suffix = name[len(base):].strip()
    ascii_name = _ORG_IDS.get(base) or (unicodedata.normalize("NFKD", base.translate(_TRANSLITERATE))
                                        .encode("ascii", "ignore").decode())
    return "-".join(filter(None, [re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-"), suffix]))


def _write_config(spec: GeneratorSpec, orgs: pl.DataFrame, changes: list, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    price_cut = spec.start + timedelta(days=spec.days // 2)
    (folder / "pricebook.yaml").write_text(PRICE_BOOK % {"price_cut": price_cut.isoformat()})
    (folder / "plans.yaml").write_text(PLANS)
    lines = ["customers:"]
    for row in orgs.iter_rows(named=True):
        lines += [
            f"  - org_id: {row['org_id']}",
            f"    name: \"{row['name']}\"",
            f"    plan: {row['plan']}",
            f"    start_date: {row['start_date'].isoformat()}",
            f"    tax_rate: \"{row['tax_rate']}\"",
            f"    email: billing@{row['org_id']}.example",
            f"    address: \"{10 + len(row['name'])} Market Street, Springfield\"",
        ]
    lines.append("credit_purchases:")
    for n, org_id in enumerate(_buyers(orgs)):
        bought = datetime.combine(spec.start + timedelta(days=9 + 7 * n), time(12), tzinfo=UTC)
        lines += [
            f"  - purchase_id: p-{1001 + n}",
            f"    org_id: {org_id}",
            f"    purchased_at: {bought.isoformat().replace('+00:00', 'Z')}",
            "    credits: 10000",
            "    price: \"100.00\"",
            "    expires_after_months: 12",
        ]
    lines.append("plan_changes:")
    lines += [f"  - {{org_id: {org_id}, effective_from: {day.isoformat()}, plan: {plan or 'null'}}}"
              for org_id, day, plan in changes]
    (folder / "customers.yaml").write_text("\n".join(lines) + "\n")


def _trace() -> pl.DataFrame:
    data = gzip.decompress((resource_dir("assets") / "traces" / "azure-llm-conversation-2023.csv.gz").read_bytes())
    return pl.read_csv(io.BytesIO(data))


def _events(spec: GeneratorSpec, day: date, orgs: pl.DataFrame, trace: pl.DataFrame,
            rng: np.random.Generator) -> pl.DataFrame:
    # a cancelled customer's gateway still sends for two days (quarantined: after_customer_end)
    ended = pl.col("end_date") + pl.duration(days=2) <= day
    active = orgs.filter((pl.col("start_date") <= day) & ~ended.fill_null(False))
    weekend = day.weekday() >= 5
    n = int(spec.events_per_day * (0.6 if weekend else 1.1) * rng.uniform(0.9, 1.1))
    if active.is_empty() or n == 0:
        return pl.DataFrame()
    weights = active["weight"].to_numpy()
    org_idx = rng.choice(active.height, size=n, p=weights / weights.sum())
    sample = rng.integers(0, trace.height, size=n)
    hours = rng.choice(24, size=n, p=DIURNAL / DIURNAL.sum())
    offset_ms = trace["offset_ms"].to_numpy()[sample] % 3_600_000  # bursts as in the real trace
    ts_us = (hours * 3_600_000 + offset_ms) * 1000 + rng.integers(0, 1000, size=n)
    action = rng.choice(len(ACTIONS), size=n, p=ACTION_P)
    model = (rng.random(n)[:, None] > MODEL_P[action].cumsum(axis=1)).sum(axis=1)
    input_tokens = trace["input_tokens"].to_numpy()[sample] * np.where(action == 2, 4, 1)
    output_tokens = np.where(action == 3, 0, trace["output_tokens"].to_numpy()[sample])
    latency = (150 + output_tokens * 18 + input_tokens * 0.15 * rng.lognormal(0, 0.3, n)).astype(np.int64)
    delay_us = rng.exponential(20e6, n)  # drawn first: the generator's stream stays as it was
    late_us = np.where(rng.random(n) < spec.late_rate, rng.integers(1, 4, n) * 86_400e6, 0)
    lag_us = (delay_us + late_us).astype(np.int64)
    midnight = datetime.combine(day, time()).replace(tzinfo=UTC)
    users = active["users"].to_numpy()[org_idx]
    frame = pl.DataFrame({
        "seq": np.arange(n),
        "org_id": active["org_id"].to_numpy()[org_idx],
        "user_no": (rng.zipf(1.6, n) % users) + 1,
        "ts_us": ts_us.astype(np.int64),
        "lag_us": lag_us,
        "model": np.array(MODELS)[model],
        "action": np.array(ACTIONS)[action],
        "input_tokens": input_tokens.astype(np.int64),
        "output_tokens": output_tokens.astype(np.int64),
        "latency_ms": latency,
    })
    return frame.select(
        pl.format("req_{}_{}", pl.lit(day.strftime("%Y%m%d")),
                  pl.col("seq").cast(pl.String).str.zfill(8)).alias("request_id"),
        "org_id",
        pl.format("{}-u{}", "org_id", "user_no").alias("user_id"),
        (pl.lit(midnight) + pl.duration(microseconds="ts_us")).alias("ts"),
        "model", "action", "input_tokens", "output_tokens", "latency_ms",
        (pl.lit(midnight) + pl.duration(microseconds=pl.col("ts_us") + pl.col("lag_us"))).dt.date()
        .alias("landing_date"),
    )


def _with_redeliveries(events: pl.DataFrame, rate: float, rng: np.random.Generator) -> tuple[pl.DataFrame, int]:
    """Copies of a few events, redelivered later the same day or the next (never billed twice)."""
    if events.is_empty():
        return events, 0
    picked = events.filter(pl.Series(rng.random(events.height) < rate))
    shift = pl.Series(rng.integers(0, 2, picked.height)).cast(pl.Int32)
    redelivered = picked.with_columns((pl.col("landing_date") + pl.duration(days=shift)).alias("landing_date"))
    return pl.concat([events, redelivered.with_columns(pl.lit(True).alias("redelivered"))],
                     how="diagonal"), picked.height


def _write_landing_date(store: Store, day: date, parts: list[pl.DataFrame], spec: GeneratorSpec, rng,
                        stats: dict) -> int:
    if not parts:
        return 0
    events = pl.concat(parts, how="diagonal").with_columns(pl.col("redelivered").fill_null(False))
    folder = f"dt={day.isoformat()}"
    redelivered = events.filter(pl.col("redelivered")).drop("redelivered", "landing_date")
    fresh = events.filter(~pl.col("redelivered")).drop("redelivered", "landing_date")
    shard = pl.Series(rng.integers(0, spec.files_per_day, fresh.height))
    bad = 0
    for k in range(spec.files_per_day):
        chunk = fresh.filter(shard == k)
        fmt = ("parquet" if rng.random() < spec.parquet_share
               else "jsonl.gz" if rng.random() < spec.gzip_share else "jsonl")
        key = f"{folder}/gateway-{k % 2}/part-{k:03d}.{fmt}"
        bad += _write_events(store, key, chunk, fmt, spec.bad_rate, rng)
        stats["files"] += 1
    if redelivered.height:
        _write_events(store, f"{folder}/redelivered-{day.strftime('%Y%m%d')}.jsonl", redelivered, "jsonl", 0, rng)
        stats["files"] += 1
    return bad


def _write_events(store: Store, key: str, events: pl.DataFrame, fmt: str, bad_rate: float, rng) -> int:
    if fmt == "parquet":
        buf = io.BytesIO()
        events.write_parquet(buf, compression="zstd", statistics=False)
        store.write_bytes(key, buf.getvalue())
        return 0
    plus_two = rng.random() < 0.25  # some gateways log local time with its offset
    ts = (
        pl.col("ts").dt.convert_time_zone("Etc/GMT-2").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f+02:00") if plus_two
        else pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
    buf = io.BytesIO()
    events.with_columns(ts).write_ndjson(buf)
    bad_lines = _bad_rows(int(rng.binomial(events.height, bad_rate)), rng)
    data = buf.getvalue() + "".join(line + "\n" for line in bad_lines).encode()
    store.write_bytes(key, gzip.compress(data, mtime=0) if fmt == "jsonl.gz" else data)
    return len(bad_lines)


def _bad_rows(n: int, rng) -> list[str]:
    good = ('"org_id": "acme-corp", "user_id": "u1", "ts": "2026-10-01T10:00:00Z", "model": "small-fast", '
            '"action": "simple", "input_tokens": 10, "output_tokens": 5, "latency_ms": 100')
    fractional_tokens = good.replace('"input_tokens": 10', '"input_tokens": 12.5')
    kinds = [
        lambda i: '{"request_id": "bad-' + str(i),  # malformed
        lambda i: f'{{"request_id": "bad-{i}", "org_id": "acme-corp"}}',  # missing_field
        lambda i: f'{{"request_id": "bad-{i}", {fractional_tokens}}}',
        lambda i: f'{{"request_id": "bad-{i}", {good.replace("small-fast", "gpt-x")}}}',
        lambda i: f'{{"request_id": "bad-{i}", {good.replace("acme-corp", "unknown-org")}}}',
        lambda i: f'{{"request_id": "bad-{i}", {good.replace("T10:00:00Z", "T10:00:00")}}}',
    ]
    return [kinds[int(rng.integers(len(kinds)))](int(rng.integers(1e9))) for _ in range(n)]
