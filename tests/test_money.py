"""Exact rounding, ROUND_HALF_UP (ties away from zero), of Fractions and Decimals."""

from decimal import Decimal
from fractions import Fraction

import pytest

from billing_pipelines.money import money, rate, round_half_up


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        (Fraction(40005 * 1500, 180000), 2, "333.38"),   # 333.375, SPEC §5
        (Decimal("0.525"), 2, "0.53"),
        (Decimal("0.515"), 2, "0.52"),
        (Decimal("-1.3469"), 2, "-1.35"),
        (Fraction(-1, 200), 2, "-0.01"),
        (Fraction(1, 3), 4, "0.3333"),
        (Decimal("7.208949999999"), 4, "7.2089"),
        (0, 2, "0.00"),
        (Decimal("123456789012345678901234.5"), 0, "123456789012345678901235"),
    ],
)
def test_money_rounds_half_up_exactly(value, places, text):
    assert money(value, places) == text


def test_round_half_up_returns_a_decimal_with_the_places():
    assert round_half_up(Fraction(5, 2), 0) == Decimal(3)
    assert str(round_half_up(Decimal("2"), 2)) == "2.00"


def test_rate_keeps_the_configured_decimals():
    assert (str(rate(Decimal("0.0120"))), str(rate(Decimal("49"))), str(rate(Decimal("0.5")))) == (
        "0.0120", "49.00", "0.50",
    )
