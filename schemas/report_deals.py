"""The annual report's figures of brokered deals and the team's equity (plan items 2, 3, 6, 7).

Data only: activities/report_deals.py derives them from recorded lifecycle events; the report's
rendering places them beside the cash rewards.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.money import Money, Percent, Rate
from schemas.text import Line


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True)


class BrokerFigures(_Part):
    """One transfer institution's or technology manager's year.

    Deals count by the day they closed; fees paid by the day of the payments that paid them (a
    fee is taken from the first payments until covered, so it may span years).
    """

    id: Line = Field(description="A transfer institution's code, a manager's certificate number")
    name: Line
    deals: int = Field(ge=0, description="Deals brokered that closed in the year")
    amount: Money = Field(description="Their contract amounts")
    fees_agreed: Money = Field(description="The service fees agreed in those deals")
    fees_paid: Money = Field(description="Service fees taken from the year's payments")


class TeamEquityReward(_Part):
    """The equity registered for a research team by one equity investment in the year."""

    achievement_id: Line
    equity_certificate: Line
    equity_share: Percent = Field(description="The company's equity the achievement was worth")
    team_equity_share: Percent = Field(description="The team's part of it, in per cent")
    team_reward_equity_share: Decimal = Field(
        ge=0, le=100, description="Of which its reward out of the institution's part, in per cent"
    )
    team_reward_rate: Rate = Field(description="The reward's rate of the institution's part")
    registered_at: AwareDatetime


class DealsAndEquityFigures(_Part):
    institution_code: Line
    year: int
    time_zone: Line
    transfer_institutions: list[BrokerFigures]
    technology_managers: list[BrokerFigures]
    team_equity: list[TeamEquityReward]
