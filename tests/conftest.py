"""Shared fixtures: a landing zone and settings in a temporary folder, over the example config or
the conformance landing zone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from billing_pipelines.resources import BillingSettings
from tests.common import CONFORMANCE, CONFORMANCE_PLAN_CHANGES, EXAMPLES, Landing


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(EXAMPLES, target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


@pytest.fixture
def landing(tmp_path: Path) -> Landing:
    return Landing(tmp_path / "landing")


@pytest.fixture
def settings(tmp_path: Path, config_dir: Path, landing: Landing) -> BillingSettings:
    env = {"BILLING_HOME": str(tmp_path / "home"), "BILLING_CONFIG": str(config_dir),
           "BILLING_LANDING": str(landing.root)}
    return BillingSettings.from_env(env)


def _conformance_settings(home: Path, example: Path) -> BillingSettings:
    """Settings over the conformance landing zone with the config of `example`."""
    return BillingSettings.from_env({
        "BILLING_HOME": str(home), "BILLING_CONFIG": str(example / "config"),
        "BILLING_LANDING": str(CONFORMANCE / "landing"), "BILLING_GRACE_DAYS": "3",
    })


@pytest.fixture
def conformance_settings(tmp_path: Path) -> BillingSettings:
    return _conformance_settings(tmp_path / "home", CONFORMANCE)


@pytest.fixture
def plan_changes_settings(tmp_path: Path) -> BillingSettings:
    """The conformance landing zone with the config of conformance-plan-changes (SPEC §7)."""
    return _conformance_settings(tmp_path / "home", CONFORMANCE_PLAN_CHANGES)
