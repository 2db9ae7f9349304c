"""Exact money: Decimal with two places, never float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

CENT = Decimal("0.01")

# What the JSON schema promises (plain, ASCII, in range) and what we write.
MONEY_PATTERN = r"^[0-9]{1,14}(\.[0-9]{1,2})?$"
RATE_PATTERN = r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$"
# Above 0: "0" or "0.00" would be refused by the model, so the pattern refuses it too.
PERCENT_PATTERN = r"^(100(\.0{1,2})?|[1-9][0-9]?(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$"
# What the validators take: a plain ASCII decimal (Python's Decimal would also take " 12.5",
# "1_000", ".5" and "١٢٣"); range and places are left to the constraints, each with its own
# message. Sign and exponent stay readable: values recorded before this check were written with
# str(Decimal), e.g. a share of "5E+1", and old histories must still load.
_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _exact_cents(value: Decimal) -> Decimal:
    cents = value.quantize(CENT)
    if value != cents:
        raise ValueError("must have at most two decimal places (whole cents)")
    return cents.copy_abs() if cents.is_zero() else cents  # "-0.00" is 0.00


def _decimal_text(example: str, *, floats: bool = False) -> BeforeValidator:
    """Strings must be plain decimals; floats (inexact) are refused unless `floats`."""

    def check(value: Any) -> Any:
        if isinstance(value, float) and not floats:
            raise PydanticCustomError(
                "decimal_as_string",
                'send decimals as strings, e.g. "{example}"',
                {"example": example},
            )
        if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
            raise PydanticCustomError(
                "decimal_format",
                'must be a plain decimal string like "{example}"',
                {"example": example},
            )
        return value

    return BeforeValidator(check)


def _schema(pattern: str, example: str, description: str) -> WithJsonSchema:
    # A string in OpenAPI too: a JSON number would lose cents past 2**53.
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "examples": [example], "description": description}
    )


# Written without exponent, as in the recorded histories ("1000000.00", "0.70").
_AS_TEXT = PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")

# Amounts in CNY. Strings like "1234.56" parse exactly; floats are refused.
Money = Annotated[
    Decimal,
    Field(ge=Decimal("0"), max_digits=16, decimal_places=2),
    _decimal_text("1234.56"),
    AfterValidator(_exact_cents),
    _AS_TEXT,
    _schema(MONEY_PATTERN, "1234.56", "Amount in CNY: a decimal string, at most two places"),
]

# A rate between 0 and 1, e.g. 0.70 for the research team's reward. Operators write policy files
# in JSON, where 0.7 is a number: floats are read here, by their shortest repr ("0.7").
Rate = Annotated[
    Decimal,
    Field(ge=Decimal("0"), le=Decimal("1"), max_digits=6, decimal_places=4),
    _decimal_text("0.70", floats=True),
    _AS_TEXT,
    _schema(RATE_PATTERN, "0.70", "A rate from 0 to 1: a decimal string, at most four places"),
]

# A share in per cent, above 0 and at most 100 (an inventor's share, an equity share).
Percent = Annotated[
    Decimal,
    Field(gt=Decimal("0"), le=Decimal("100"), decimal_places=2),
    _decimal_text("50.00"),
    _AS_TEXT,
    _schema(PERCENT_PATTERN, "50.00", "Per cent, above 0 and at most 100: a decimal string"),
]


def to_cents(value: Decimal) -> Decimal:
    """Round half up to the cent, the convention of Chinese invoicing."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)
