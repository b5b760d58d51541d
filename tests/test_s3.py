"""Landing zone and warehouse on S3 (a real S3 API: moto's server on loopback): the conformance
landing zone ingested from S3 into an S3 warehouse gives the expected counts and the same bytes
as a local run, and a month closes from the S3 warehouse."""

from __future__ import annotations

import json
from datetime import date

import pytest

from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import BILLED, PRICED, ingest
from billing_pipelines.month_close.documents import stored_month_close
from billing_pipelines.month_close.run import close_months
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage.objects import Store
from billing_pipelines.storage.warehouse import Warehouse
from tests.s3_support import moto_s3, s3_env, upload_folder  # noqa: F401  (fixtures)

pytestmark = pytest.mark.s3

from tests.common import CONFORMANCE  # noqa: E402  (tests/data/conformance)

OUTPUTS = [(PRICED, "priced_events"), (PRICED, "quarantine"), (BILLED, "cross_day_duplicates")]


def test_store_on_s3_lists_reads_writes_and_deletes(s3_env):
    store = Store(f"s3://{s3_env}/zone")
    assert store.list("") == [] and store.list_dirs("") == [] and not store.exists("dt=2026-11-03/a.jsonl")
    store.write_bytes("dt=2026-11-03/b/a.jsonl", b"{}\n")
    store.write_bytes("dt=2026-11-03/a.jsonl", b"[]\n")
    assert [f.key for f in store.list("")] == ["dt=2026-11-03/a.jsonl", "dt=2026-11-03/b/a.jsonl"]
    assert store.list_dirs("") == ["dt=2026-11-03"]
    assert store.read_bytes("dt=2026-11-03/b/a.jsonl") == b"{}\n"
    store.delete("dt=2026-11-03/a.jsonl")
    store.delete("dt=2026-11-03/a.jsonl")  # deleting twice is fine
    assert [f.key for f in store.list("dt=2026-11-03")] == ["dt=2026-11-03/b/a.jsonl"]


def test_copies_between_stores_keep_the_bytes_and_move_none_where_they_can(tmp_path, s3_env, monkeypatch):
    local, other, s3 = Store(tmp_path / "a"), Store(tmp_path / "b"), Store(f"s3://{s3_env}/a")
    local.write_bytes("x.parquet", b"landed bytes")
    other.copy_from(local, "x.parquet", "dt=1/x.parquet")
    assert (tmp_path / "a/x.parquet").stat().st_ino == (tmp_path / "b/dt=1/x.parquet").stat().st_ino  # a hard link
    s3.copy_from(local, "x.parquet", "up.parquet")
    s3.copy_from(s3, "up.parquet", "dt=1/same.parquet")  # server-side
    other.copy_from(s3, "dt=1/same.parquet", "down.parquet")
    assert other.read_bytes("down.parquet") == s3.read_bytes("dt=1/same.parquet") == b"landed bytes"
    monkeypatch.setattr("os.link", lambda *_: (_ for _ in ()).throw(OSError(18, "Invalid cross-device link")))
    other.copy_from(local, "x.parquet", "copied.parquet")
    assert (tmp_path / "b/copied.parquet").stat().st_ino != (tmp_path / "a/x.parquet").stat().st_ino
    assert other.read_bytes("copied.parquet") == b"landed bytes"
    assert not [f for f in other.list("") if f.key.endswith(".tmp")]


def _settings(tmp_path, name: str, landing: str, warehouse: str | None = None) -> BillingSettings:
    env = {"BILLING_HOME": str(tmp_path / name), "BILLING_CONFIG": str(CONFORMANCE / "config"),
           "BILLING_LANDING": landing, "BILLING_GRACE_DAYS": "3"}
    return BillingSettings.from_env(env | ({"BILLING_WAREHOUSE": warehouse} if warehouse else {}))


def _outputs(wh: Warehouse, partitions: list[str]) -> dict[str, bytes]:
    """Every committed output file of the ingest, by dataset/partition/name, as bytes."""
    return {
        f"{dataset}/{part}/{name}": wh.store.read_bytes(f"{dataset}/{part}/{wh.manifest(dataset, part)['files'][name]}")
        for dataset, name in OUTPUTS for part in partitions
    }


def test_conformance_from_s3_matches_local_byte_for_byte_and_closes_a_month(tmp_path, s3_env):
    upload_folder(CONFORMANCE / "landing", s3_env, "landing")
    on_s3 = _settings(tmp_path, "s3", f"s3://{s3_env}/landing", f"s3://{s3_env}/warehouse")
    local = _settings(tmp_path, "local", str(CONFORMANCE / "landing"))

    dates = sorted(landing_dates(on_s3.landing_store()))
    assert dates == sorted(landing_dates(local.landing_store()))
    expected = json.loads((CONFORMANCE / "expected.json").read_text())["ingest"]
    assert {s.landing_date: s.to_json() for s in ingest(on_s3, dates)} == expected
    assert {s.landing_date: s.to_json() for s in ingest(local, dates)} == expected

    partitions = [f"dt={d.isoformat()}" for d in dates]
    s3_outputs = _outputs(on_s3.warehouse(), partitions)
    assert s3_outputs == _outputs(local.warehouse(), partitions)
    assert len(s3_outputs) == 3 * len(partitions)

    month = date(2026, 10, 1)
    close_months(on_s3, month)  # and September (globex's start) first
    close_months(local, month)
    documents = [{k: v for k, v in stored_month_close(s.warehouse(), month).items() if k != "shards"}
                 for s in (on_s3, local)]  # (the versions of what they read differ: the landed files' times)
    assert documents[0] == documents[1]
    closed = Warehouse(f"s3://{s3_env}/warehouse")
    assert closed.partitions("month_close") == ["month=2026-09", "month=2026-10"]
    invoices = {i["org_id"]: i["total"] for i in stored_month_close(on_s3.warehouse(), month)["invoices"]}
    assert invoices == {i["org_id"]: i["total"] for i in
                        json.loads((CONFORMANCE / "expected.json").read_text())["invoices"]["2026-10"]}
