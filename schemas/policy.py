"""Transformation policy: versioned configuration per institution (rates, SLAs, periods)."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.money import Rate


class Policy(BaseModel):
    """A workflow records the version it started with and keeps it for life."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    institution_code: str = Field(description="Institution code, or '*' for the default")
    version: str = Field(min_length=1, max_length=40)
    # Net income distribution (item 11, Shanghai regulation: team reward at least 70%).
    team_reward_minimum: Rate = Decimal("0.70")
    team_reward_rate: Rate = Decimal("0.70")
    tto_fund_rate: Rate = Decimal("0.10")
    # Evaluation.
    reviewer_count: int = Field(default=3, ge=1, le=15)
    review_sla: timedelta = timedelta(days=30)
    review_escalation_grace: timedelta = timedelta(days=7)
    transaction_min_score: Decimal = Field(default=Decimal("3.5"), ge=1, le=5)
    poc_min_score: Decimal = Field(default=Decimal("2.5"), ge=1, le=5)
    # Transaction.
    publicity_period: timedelta = timedelta(days=15)
    payment_grace: timedelta = timedelta(days=30)
    # Item 8: the mandatory listing falls due at this time of day (UTC) on the transformation
    # deadline; by default once the whole day has passed.
    mandatory_listing_due_time: time = time.max

    @field_validator("mandatory_listing_due_time")
    @classmethod
    def _utc_time_of_day(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a UTC time of day, without an offset")
        return value

    @model_validator(mode="after")
    def _rates_are_lawful(self) -> Policy:
        if self.team_reward_rate < self.team_reward_minimum:
            raise ValueError("team_reward_rate is below the statutory team_reward_minimum")
        if self.team_reward_rate + self.tto_fund_rate > 1:
            raise ValueError("team_reward_rate + tto_fund_rate exceed the whole net income")
        if self.poc_min_score > self.transaction_min_score:
            raise ValueError("poc_min_score must not exceed transaction_min_score")
        return self


DEFAULT_POLICY = Policy(institution_code="*", version="shanghai-2021.1")
