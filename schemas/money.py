"""Exact money: Decimal with two places, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import AfterValidator, Field

CENT = Decimal("0.01")


def _exact_cents(value: Decimal) -> Decimal:
    if value != value.quantize(CENT):
        raise ValueError("must have at most two decimal places (whole cents)")
    return value.quantize(CENT)


# Amounts in CNY. Strings like "1234.56" parse exactly; floats are refused by strict checks
# at the HTTP edge (see gateway) and never produced internally.
Money = Annotated[
    Decimal,
    Field(ge=Decimal("0"), max_digits=16, decimal_places=2),
    AfterValidator(_exact_cents),
]

# A rate between 0 and 1, e.g. 0.70 for the research team's reward.
Rate = Annotated[Decimal, Field(ge=Decimal("0"), le=Decimal("1"), max_digits=6, decimal_places=4)]


def to_cents(value: Decimal) -> Decimal:
    """Round half up to the cent, the convention of Chinese invoicing."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)
