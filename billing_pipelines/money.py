"""Exact money: rounding of exact values (Fraction or Decimal) ROUND_HALF_UP, and their text."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction


def round_half_up(value: Fraction | Decimal | int, places: int) -> Decimal:
    """`value` rounded to `places` decimals, ties away from zero (ROUND_HALF_UP), exactly."""
    scaled = Fraction(value) * 10**places
    magnitude = int(abs(scaled) + Fraction(1, 2))
    return Decimal(magnitude if scaled >= 0 else -magnitude).scaleb(-places)


def money(value: Fraction | Decimal | int, places: int = 2) -> str:
    """Text of `value` rounded half-up with exactly `places` decimals ("49.00")."""
    return f"{round_half_up(value, places):.{places}f}"


def rate_text(value: Decimal) -> str:
    """A configured price as text with at least 2 decimals ("0.0120", "49.00")."""
    return f"{value:.{max(2, -value.as_tuple().exponent)}f}"
