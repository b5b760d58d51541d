"""The decisions of a landing date's checks: a missing data drop, a known gap, an unusual share of
quarantined rows; and the settings they read."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing_pipelines.ingest.quality import known_gaps, missing_drop, quarantine_limit, quarantined_share


def test_known_gaps_are_dates_and_ranges():
    assert known_gaps("") == set()
    assert known_gaps("2026-12-25, 2027-01-01..2027-01-02") == {date(2026, 12, 25), date(2027, 1, 1), date(2027, 1, 2)}
    with pytest.raises(ValueError, match="not a date or FROM..TO range: 'Christmas'"):
        known_gaps("Christmas")


def test_a_date_without_files_is_a_missing_drop_unless_a_known_gap():
    gaps = {date(2026, 12, 25)}
    assert missing_drop(date(2026, 12, 24), 3, gaps) is None
    assert missing_drop(date(2026, 12, 25), 0, gaps) is None
    assert "no event file landed on 2026-12-26" in missing_drop(date(2026, 12, 26), 0, gaps)


def test_the_quarantined_share_and_its_limit():
    assert quarantined_share(0, 0) == Decimal(0)
    assert quarantined_share(3, 1) == Decimal("0.3333")
    assert quarantine_limit("0.05") == Decimal("0.05")
    for bad in ("5%", "1.5"):
        with pytest.raises(ValueError, match="BILLING_QUARANTINE_LIMIT must be a share between 0 and 1"):
            quarantine_limit(bad)
