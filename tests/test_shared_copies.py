"""The contract's files kept in this repository (tests/data, docs/SPEC.md) are copies of
../shared: where that folder is beside the checkout (or BILLING_SHARED_DIR names it), every copy
must equal its original, so a change of the contract reaches the tests."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tests.common import DATA, SHARED

COPIES = {DATA / "examples": "examples", DATA / "conformance": "conformance",
          DATA / "conformance-plan-changes": "conformance-plan-changes"}
SPEC = Path(__file__).resolve().parents[1] / "docs" / "SPEC.md"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("copy, name", COPIES.items(), ids=list(COPIES.values()))
def test_test_data_equals_the_shared_contract(copy: Path, name: str):
    original = SHARED / name
    if not original.is_dir():
        pytest.skip(f"{original} is not beside this checkout: the copies in tests/data are used as they are")
    assert _files(copy) == _files(original)
    differ = [f for f in sorted(_files(copy)) if not filecmp.cmp(copy / f, original / f, shallow=False)]
    assert differ == [], f"copy again from {original}: {differ}"


def test_the_spec_copy_equals_the_shared_spec():
    original = SHARED / "SPEC.md"
    if not original.is_file():
        pytest.skip(f"{original} is not beside this checkout")
    assert SPEC.read_bytes() == original.read_bytes(), "copy ../shared/SPEC.md to docs/SPEC.md again"
