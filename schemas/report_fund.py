"""The transfer fund's figures of one institution's annual report (plan item 4): what the
report renders; built by activities/report_fund.py from the ledger, by business date."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.money import Money
from schemas.text import Line


class FundUseByPurpose(BaseModel):
    model_config = ConfigDict(frozen=True)

    purpose: Line
    uses: int
    amount: Money


class FundYear(BaseModel):
    """A year of the fund on the jurisdiction's calendar: opening + accrued - used = closing."""

    model_config = ConfigDict(frozen=True)

    institution: Line
    year: int
    opening_balance: Money
    accruals: int
    accrued: Money
    uses: int
    used: Money
    closing_balance: Money
    by_purpose: list[FundUseByPurpose]
