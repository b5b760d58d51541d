"""A snapshot of the definitions' assets: key, partitions, dependencies (with their partition
mapping), checks, owners, tags, code version, so a change of lineage shows in review.

After an intended change: `UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py`
rewrites tests/data/definitions_snapshot.json; review its diff with the change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from billing_pipelines import definitions
from billing_pipelines.definitions import defs

SNAPSHOT = Path(__file__).parent / "data" / "definitions_snapshot.json"


def partitions(partitions_def) -> dict | None:
    """A partitions definition by kind and cadence (not its start: that follows the landing zone)."""
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return {"multi": {d.name: partitions(d.partitions_def) for d in partitions_def.partitions_defs}}
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return {"cron": partitions_def.cron_schedule, "fmt": partitions_def.fmt,
                "end_offset": partitions_def.end_offset}
    return {"kind": type(partitions_def).__name__}


def mapping(graph, key: dg.AssetKey, parent: dg.AssetKey) -> str:
    found = graph.get_partition_mapping(key, parent)
    if isinstance(found, dg.TimeWindowPartitionMapping):
        return f"TimeWindow({found.start_offset}, {found.end_offset})"
    return type(found).__name__


def snapshot(definitions: dg.Definitions) -> dict:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "materializable": node.is_materializable,
            "partitions": partitions(node.partitions_def),
            "deps": {p.to_user_string(): mapping(graph, key, p) if node.partitions_def else "all"
                     for p in sorted(node.parent_keys, key=lambda k: k.to_user_string())},
            "checks": sorted(c.name for c in node.check_keys),
            "owners": list(node.owners),
            "tags": {k: v for k, v in node.tags.items() if not k.startswith("dagster/")},
            "code_version": node.code_version,
        }
    return assets


def differences(expected: dict, actual: dict) -> list[str]:
    """What changed, asset by asset and field by field."""
    found = [f"{key}: {'added' if key in actual else 'removed'}" for key in sorted(set(expected) ^ set(actual))]
    for key in sorted(set(expected) & set(actual)):
        found += [f"{key}.{field}: {expected[key].get(field)!r} -> {actual[key].get(field)!r}"
                  for field in sorted(set(expected[key]) | set(actual[key]))
                  if expected[key].get(field) != actual[key].get(field)]
    return found


def test_the_definitions_match_their_snapshot():
    actual = snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert differences(json.loads(SNAPSHOT.read_text()), actual) == []


def test_a_removed_dependency_fails_the_snapshot():
    """live_balances without its dependency on credit_ledger, as a careless edit would leave it."""
    def drop_ledger(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key != dg.AssetKey("live_balances"):
            return spec
        return spec.replace_attributes(deps=[d for d in spec.deps if d.asset_key != dg.AssetKey("credit_ledger")])

    mutated = dg.Definitions(assets=[a.map_asset_specs(drop_ledger) if isinstance(a, dg.AssetsDefinition) else a
                                     for a in definitions.assets], resources=defs.resources)
    found = differences(json.loads(SNAPSHOT.read_text()), snapshot(mutated))
    assert len(found) == 1 and found[0].startswith("live_balances.deps:") and "credit_ledger" in found[0]
