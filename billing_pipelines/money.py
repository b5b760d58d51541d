"""Exact money: rounding of exact values (Fraction or Decimal) ROUND_HALF_UP, their text, and the
field types of the typed documents (invoices, margin rows): Decimal inside, text in JSON."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from fractions import Fraction
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, PlainSerializer, Strict, StringConstraints
from pydantic_core import PydanticCustomError

_WIDE = Context(prec=80)  # quantize exactly whatever the size of a sum


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


def rate(value: Decimal) -> Decimal:
    """A configured price with at least 2 decimals (0.0120, 49.00), as invoices print it."""
    return round_half_up(value, max(2, -value.as_tuple().exponent))


def _decimal(value: Any) -> Decimal:
    """A decimal from its text (or an integer); a binary float or a boolean is refused."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise PydanticCustomError("decimal_text", "is not a decimal: {value}", {"value": repr(value)}) from None
    else:
        raise PydanticCustomError("decimal_text", "must be a decimal string, got {value}", {"value": repr(value)})
    if not number.is_finite():
        raise PydanticCustomError("decimal_text", "must be finite, got {value}", {"value": repr(value)})
    return number


def _exactly(places: int):
    def check(value: Decimal) -> Decimal:
        if value.as_tuple().exponent != -places:
            raise PydanticCustomError("decimal_places", "must have exactly {places} decimals, got {value}",
                                      {"places": places, "value": str(value)})
        return value
    return check


# Decimal in Python, its own digits as text in JSON ("0.0120", "-3.60", "1250").
DecimalText = Annotated[Decimal, BeforeValidator(_decimal), PlainSerializer(lambda v: f"{v:f}", str, when_used="json")]
Money = Annotated[DecimalText, AfterValidator(_exactly(2))]  # SPEC §6: exactly 2 decimals
Cost = Annotated[DecimalText, AfterValidator(_exactly(4))]  # cogs_usd: exactly 4 decimals
PerCredit = Annotated[DecimalText, AfterValidator(_exactly(6))]  # a cost or revenue per credit: 6 decimals

# The other fields of the typed documents (invoicing.models, margin.report, margin.advisor).
Name = Annotated[str, StringConstraints(strict=True, min_length=1)]  # an id, a kind, a description
MonthKey = Annotated[str, StringConstraints(strict=True, pattern=r"^\d{4}-\d{2}$")]  # "2026-11"
Count = Annotated[int, Strict()]  # credits, events: a whole number, never a float or text
DOCUMENT = ConfigDict(extra="forbid", frozen=True)  # every key is a field; never changed once made
