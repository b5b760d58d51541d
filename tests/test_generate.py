"""`billing generate`: seeded and deterministic, with plan changes and a cancellation in the
config it writes (SPEC §7) that the landing zone follows."""

from __future__ import annotations

import filecmp
import json
from datetime import date

from billing_pipelines.config import load_config
from billing_pipelines.generate import GeneratorSpec, generate
from tests.reference_ingest import load_landing

SPEC = GeneratorSpec(seed=7, orgs=12, start=date(2026, 10, 1), days=35, events_per_day=150, files_per_day=2)


def test_the_same_seed_writes_the_same_files_with_plan_changes(tmp_path):
    for run in ("a", "b"):
        generate(SPEC, tmp_path / run / "config", str(tmp_path / run / "landing"))
    compared = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not compared.diff_files and not compared.left_only and not compared.right_only
    config = load_config(tmp_path / "a" / "config")
    fees = {c.org_id: config.plan_of(c.org_id).monthly_fee for c in config.plan_changes}
    moves = {(c.org_id, "cancelled" if c.plan is None else
              "up" if config.plans[c.plan].monthly_fee > fees[c.org_id] else "down") for c in config.plan_changes}
    assert sorted(kind for _, kind in moves) == ["cancelled", "down", "up", "up"]
    assert date(2026, 11, 1) in {c.effective_from for c in config.plan_changes}  # a change on a month's first day
    [(ended, end)] = [(c.org_id, c.effective_from) for c in config.plan_changes if c.plan is None]
    ingest = load_landing(tmp_path / "a" / "landing", config)
    late = [q for q in ingest.quarantine if q[4] == "after_customer_end"]
    assert late and {json.loads(q[3])["org_id"] for q in late} == {ended}
    assert all(e["ts"].date() < end for e in ingest.billed if e["org_id"] == ended)
