"""Exact money: rounding of exact values (Fraction or Decimal) ROUND_HALF_UP, and their text."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

_WIDE = Context(prec=80)  # quantize exactly whatever the size of a sum
from fractions import Fraction


def round_half_up(value: Fraction | Decimal | int, places: int) -> Decimal:
    """`value` rounded to `places` decimals, ties away from zero (ROUND_HALF_UP), exactly."""
    if isinstance(value, Decimal):
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_WIDE)
    if not isinstance(value, Fraction):
        value = Fraction(value)
    numerator, denominator = abs(value.numerator) * 10**places, value.denominator
    magnitude = (2 * numerator + denominator) // (2 * denominator)
    return Decimal(magnitude if value >= 0 else -magnitude).scaleb(-places)


def money(value: Fraction | Decimal | int, places: int = 2) -> str:
    """Text of `value` rounded half-up with exactly `places` decimals ("49.00")."""
    return f"{round_half_up(value, places):.{places}f}"


def rate_text(value: Decimal) -> str:
    """A configured price as text with at least 2 decimals ("0.0120", "49.00")."""
    return f"{value:.{max(2, -value.as_tuple().exponent)}f}"
