"""Config files validated like a product: a bad file in the BILLING_CONFIG folder makes `billing`
print one message naming file, entry, field and line, exit 1 and create no Dagster run; unknown
partitions say which are valid; a failed run says what failed in one line."""

from __future__ import annotations

import os
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from billing_pipelines import cli
from billing_pipelines.cli import runs
from billing_pipelines.config import load_config
from billing_pipelines.resources import BillingSettings

PLAN_CHANGE = "plan_changes:\n  - {org_id: acme, effective_from: 2026-11-16, plan: enterprise}\n"
PURCHASE = ("  - {purchase_id: p-1001, org_id: globex, purchased_at: 2026-11-12T09:00:00Z, credits: 5, "
            "price: '1.00', expires_after_months: 1}\n")

# (file, text replaced, replacement, message): each a config error of a kind of its own.
BAD_CONFIGS = {
    "duplicate org_id": (
        "customers.yaml", "org_id: globex", "org_id: acme",
        "customers.yaml: customers entry 2 (org_id 'acme'), field `org_id`: org_id 'acme' is listed twice "
        "(first as customers entry 1) (line 9)"),
    "duplicate plan": (
        "plans.yaml", "plan: enterprise", "plan: pro",
        "plans.yaml: plans entry 3 (plan 'pro'), field `plan`: plan 'pro' is listed twice "
        "(first as plans entry 2) (line 14)"),
    "duplicate action": (
        "pricebook.yaml", "action: complex", "action: simple",
        "pricebook.yaml: actions entry 2 (action 'simple'), field `action`: action 'simple' is listed twice "
        "(first as actions entry 1) (line 30)"),
    "duplicate purchase_id": (
        "customers.yaml", "    expires_after_months: 12\n", "    expires_after_months: 12\n" + PURCHASE,
        "customers.yaml: credit_purchases entry 2 (purchase_id 'p-1001'), field `purchase_id`: purchase_id "
        "'p-1001' is listed twice (first as credit_purchases entry 1) (line 29)"),
    "duplicate rate row": (
        "pricebook.yaml", "effective_from: 2026-11-15", "effective_from: 2026-01-01",
        "pricebook.yaml: models entry 2 (model 'frontier-large', effective_from '2026-01-01'), field "
        "`effective_from`: model 'frontier-large' effective_from 2026-01-01 is listed twice "
        "(first as models entry 1) (line 10)"),
    "date": (
        "customers.yaml", "start_date: 2026-09-15", "start_date: 2026-13-01",
        "customers.yaml: customers entry 2 (org_id 'globex'), field `start_date`: not a date: '2026-13-01' "
        "(line 12)"),
    "instant": (
        "customers.yaml", "purchased_at: 2026-11-10T12:00:00Z", "purchased_at: 2026-11-10 12:00",
        "customers.yaml: credit_purchases entry 1 (purchase_id 'p-1001'), field `purchased_at`: not an "
        "RFC 3339 time with a UTC offset: '2026-11-10 12:00' (line 25)"),
    "decimal": (
        "plans.yaml", 'monthly_fee: "49.00"', 'monthly_fee: "49,00"',
        "plans.yaml: plans entry 2 (plan 'pro'), field `monthly_fee`: not a decimal: '49,00' (line 9)"),
    "whole number": (
        "plans.yaml", "included_credits: 5000", "included_credits: 5000.5",
        "plans.yaml: plans entry 2 (plan 'pro'), field `included_credits`: must be a whole number, got 5000.5 "
        "(line 10)"),
    "unknown top-level key": (
        "customers.yaml", "credit_purchases:", "credit_purchase:",
        "customers.yaml: field `credit_purchase`: unknown field (did you mean `credit_purchases`?) (line 22)"),
    "unknown entry key": (
        "plans.yaml", "monthly_fee", "monthy_fee",
        "plans.yaml: plans entry 1 (plan 'free'), field `monthy_fee`: unknown field (did you mean "
        "`monthly_fee`?) (line 3)"),
    "unknown rollover key": (
        "plans.yaml", "max_credits: 2500", "max_credit: 2500",
        "plans.yaml: plans entry 2 (plan 'pro'), field `rollover.max_credit`: unknown field (did you mean "
        "`max_credits`?) (line 12)"),
    "unknown rate_limits key": (
        "plans.yaml", "concurrent: 10", "concurency: 10",
        "plans.yaml: plans entry 2 (plan 'pro'), field `rate_limits.concurency`: unknown field (did you mean "
        "`concurrent`?) (line 13)"),
    "key twice": (
        "customers.yaml", "    name: Acme Corp\n", "    name: Acme Corp\n    name: Acme\n",
        "customers.yaml: key `name` given twice in one mapping (lines 3 and 4)"),
    "unknown plan": (
        "customers.yaml", "plan: free", "plan: gold",
        "customers.yaml: customers entry 3 (org_id 'initech'), field `plan`: unknown plan 'gold' "
        "(plans.yaml has free, pro, enterprise) (line 18)"),
    "purchase before the start": (
        "customers.yaml", "purchased_at: 2026-11-10T12:00:00Z", "purchased_at: 2026-09-30T23:59:59Z",
        "customers.yaml: credit_purchases entry 1 (purchase_id 'p-1001'), field `purchased_at`: before "
        "acme's start_date 2026-10-01 (line 25)"),
    "change on the start_date": (
        "customers.yaml", PLAN_CHANGE, PLAN_CHANGE.replace("2026-11-16", "2026-10-01"),
        "customers.yaml: plan_changes entry 1 (org_id 'acme', effective_from '2026-10-01', plan 'enterprise'), "
        "field `effective_from`: on or before acme's start_date 2026-10-01: a change takes effect after the "
        "start (line 30)"),
    "change to an unknown plan": (
        "customers.yaml", PLAN_CHANGE, PLAN_CHANGE.replace("enterprise", "gold"),
        "customers.yaml: plan_changes entry 1 (org_id 'acme', effective_from '2026-11-16', plan 'gold'), "
        "field `plan`: unknown plan 'gold' (plans.yaml has free, pro, enterprise) (line 30)"),
    "second change on one date": (
        "customers.yaml", PLAN_CHANGE, PLAN_CHANGE + "  - {org_id: acme, effective_from: 2026-11-16, plan: free}\n",
        "customers.yaml: plan_changes entry 2 (org_id 'acme', effective_from '2026-11-16', plan 'free'), "
        "field `effective_from`: a second change of acme on 2026-11-16 (the first is plan_changes entry 1) "
        "(line 31)"),
    "change after a cancellation": (
        "customers.yaml", PLAN_CHANGE, PLAN_CHANGE + "  - {org_id: acme, effective_from: 2026-11-02, plan: null}\n",
        "customers.yaml: plan_changes entry 1 (org_id 'acme', effective_from '2026-11-16', plan 'enterprise'), "
        "field `effective_from`: after acme's cancellation from 2026-11-02 (plan_changes entry 2) (line 30)"),
    "change of an unknown org": (
        "customers.yaml", PLAN_CHANGE, PLAN_CHANGE.replace("acme", "acme-eu"),
        "customers.yaml: plan_changes entry 1 (org_id 'acme-eu', effective_from '2026-11-16', plan "
        "'enterprise'), field `org_id`: unknown org 'acme-eu' (not in customers) (line 30)"),
    "seller.yaml": (
        "seller.yaml", "payment_terms_days: 30", "payment_terms_days: 400",
        "seller.yaml: field `payment_terms_days`: must be at most 365, got 400 (line 2)"),
}


@pytest.fixture
def env(tmp_path, config_dir, landing, monkeypatch) -> BillingSettings:
    """The example config (with a plan change and a seller) as BILLING_CONFIG, state in tmp_path."""
    (config_dir / "customers.yaml").write_text((config_dir / "customers.yaml").read_text() + PLAN_CHANGE)
    (config_dir / "seller.yaml").write_text("name: Example AI Ltd\npayment_terms_days: 30\n")
    for name, value in {"BILLING_HOME": tmp_path / "home", "BILLING_CONFIG": config_dir,
                        "BILLING_LANDING": landing.root, "DAGSTER_HOME": tmp_path / "dagster"}.items():
        monkeypatch.setenv(name, str(value))
    return BillingSettings.from_env()


def dagster_runs(settings: BillingSettings) -> list:
    """The runs of DAGSTER_HOME; none where no instance was even created there."""
    if not Path(os.environ["DAGSTER_HOME"]).exists():
        return []
    return runs.dagster_instance(settings).get_runs()


def edit(settings: BillingSettings, file: str, old: str, new: str) -> None:
    path = Path(settings.config_dir, file)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_example_config_with_a_plan_change_and_a_seller_is_valid(env):
    runs.check_config(env)
    assert len(load_config(env.config_dir).plan_changes) == 1


@pytest.mark.parametrize("kind", BAD_CONFIGS)
def test_a_bad_config_gets_one_message_and_nothing_runs(env, kind):
    file, old, new, message = BAD_CONFIGS[kind]
    edit(env, file, old, new)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["close-month", "2026-11"])
    assert str(exit_.value) == f"billing: bad config in {env.config_dir}: {message}"
    assert dagster_runs(env) == []


def test_invalid_yaml_gets_its_line_and_column_and_nothing_runs(env):
    edit(env, "customers.yaml", "    name: Acme Corp", "   name: Acme Corp")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["close-month", "2026-11"])
    message = str(exit_.value)  # the problem is worded by libyaml, or by PyYAML without it
    assert message.startswith(
        f"billing: bad config in {env.config_dir}: customers.yaml: not valid YAML (line 3, column 4): ")
    assert "\n" not in message and "^" not in message
    assert dagster_runs(env) == []


def test_ingest_checks_the_config_before_it_runs(env):
    edit(env, "customers.yaml", "credit_purchases:", "credit_purchase:")
    with pytest.raises(SystemExit, match=re.escape("field `credit_purchase`: unknown field")):
        cli.main(["ingest", "2026-11-03"])
    assert dagster_runs(env) == []


def test_rates_and_money_are_parsed_from_their_text(env):
    edit(env, "plans.yaml", 'overage_credit_price: "0.0120"', "overage_credit_price: 0.0120")
    edit(env, "plans.yaml", 'monthly_fee: "49.00"', "monthly_fee: 49.10")
    pro = load_config(env.config_dir).plans["pro"]
    assert (str(pro.overage_credit_price), str(pro.monthly_fee)) == ("0.0120", "49.10")
    assert isinstance(pro.monthly_fee, Decimal)


@pytest.mark.parametrize("args, first", [(["close-month", "2030-01"], "2030-01 not a billing month partition"),
                                         (["ingest", "1999-01-01"], "1999-01-01 not a landing date partition"),
                                         (["backfill", "1999-01-01"], "1999-01-01 not a landing date partition")])
def test_an_unknown_partition_says_which_are_valid_and_how_to_go_further_back(env, args, first):
    from billing_pipelines.partitions import billing_months, landing_dates

    partitions, shown = (billing_months, 7) if args[0] == "close-month" else (landing_dates, 10)
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert str(exit_.value) == (
        f"billing: {first}: valid are {partitions.get_first_partition_key()[:shown]} to "
        f"{partitions.get_last_partition_key()[:shown]} "
        f"(up to {'this month' if shown == 7 else 'today, UTC'}; "
        "for earlier ones set BILLING_FIRST_DAY=YYYY-MM-DD, by default the first landed date, or the first "
        "day of the earliest customer's start month)")
    assert dagster_runs(env) == []


def test_a_failed_run_says_what_failed_in_the_first_line_of_its_cause(env):
    """The config broken after `billing` checked it: the run fails, and says why in one line."""
    edit(env, "customers.yaml", "    name: Acme Corp", "   name: Acme Corp")
    with pytest.raises(SystemExit) as exit_:
        runs.run_job("daily_ingest", "2026-11-03", env)
    assert str(exit_.value).startswith(
        "billing: daily_ingest 2026-11-03 failed: ConfigError: customers.yaml: not valid YAML (line 3, column 4)")
    assert [run.is_failure for run in dagster_runs(env)] == [True]


def test_the_line_of_a_multi_line_cause_is_the_one_saying_what_failed_never_its_caret():
    from dagster._utils.error import serializable_error_info_from_exc_info

    try:
        yaml.safe_load("customers:\n  - org_id: acme\n   plan: x\n")
    except yaml.YAMLError:
        error = serializable_error_info_from_exc_info(sys.exc_info())
    assert error.message.splitlines()[-1].strip() == "^"
    assert runs.what_failed(error) == "ParserError: while parsing a block collection"
