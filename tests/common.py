"""What the tests share: the contract's example data, landing files written as sinks write them,
a config with a seller, and services that skip with a reason where they are missing (and fail in
CI, where CI=true)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

# The contract's examples, copied from ../shared (test_shared_copies.py checks they still match).
DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = DATA / "examples"
CONFORMANCE = DATA / "conformance"
CONFORMANCE_PLAN_CHANGES = DATA / "conformance-plan-changes"
SHARED = Path(os.environ.get("BILLING_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")


def require_service(name: str, reason: str) -> None:
    """Skip (or, in CI, fail) a test whose service is unavailable."""
    message = f"{name} unavailable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: services are required)")
    pytest.skip(message)


def event(rid: str, org: str = "acme", ts: str = "2026-11-03T10:00:00Z", model: str = "small-fast",
          action: str = "simple", input_tokens=100, output_tokens=50, latency_ms=10, **extra) -> dict:
    row = {"request_id": rid, "org_id": org, "user_id": f"{org}-1", "ts": ts, "model": model,
           "action": action, "input_tokens": input_tokens, "output_tokens": output_tokens,
           "latency_ms": latency_ms}
    row.update(extra)
    return row


class Landing:
    """Writes landing files under `root/dt=DAY/`."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, day: str, name: str) -> Path:
        path = self.root / f"dt={day}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def jsonl(self, day: str, name: str, rows: list) -> Path:
        text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
        path = self.path(day, name)
        path.write_bytes(gzip.compress(text.encode(), mtime=0) if name.endswith(".gz") else text.encode())
        return path

    def parquet(self, day: str, name: str, rows: list[dict], ts_as_timestamp: bool = True) -> Path:
        frame = pl.DataFrame(rows)
        if ts_as_timestamp:
            frame = frame.with_columns(pl.col("ts").str.to_datetime(time_zone="UTC", time_unit="us"))
        buf = io.BytesIO()
        frame.write_parquet(buf)
        path = self.path(day, name)
        path.write_bytes(buf.getvalue())
        return path


TEST_SELLER = ("name: Northwind AI Ltd\naddress: 10 Market Street\nemail: billing@northwind-ai.example\n"
               "payment_terms_days: 30\n")


def config_with_seller(source: Path, target: Path) -> Path:
    """A writable copy of the config folder `source` at `target`, with a seller.yaml (final
    invoices need one; the shared examples have none)."""
    shutil.copytree(source, target)
    for f in target.iterdir():
        f.chmod(0o644)
    (target / "seller.yaml").write_text(TEST_SELLER)
    return target


