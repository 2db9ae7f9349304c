"""Transformation policy: versioned configuration per institution (rates, SLAs, periods)."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.disclosure import TechnologyField
from schemas.evaluation_institution import EvaluatorCode
from schemas.jurisdiction import DEFAULT_JURISDICTION, JURISDICTIONS, Jurisdiction
from schemas.money import Rate

# A time of day read as UTC, written without an offset ("23:59:59.999999"): not an RFC 3339
# "time", which requires one, so the JSON schema says what is really sent.
UtcTimeOfDay = Annotated[
    time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-2][0-9]:[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$",
            "description": "A UTC time of day, HH:MM[:SS[.ffffff]], without an offset",
        }
    ),
]


class Policy(BaseModel):
    """A workflow records the version it started with and keeps it for life."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    institution_code: str = Field(description="Institution code, or '*' for the default")
    version: str = Field(min_length=1, max_length=40)
    # Whose law sets the statutory floors (schemas/jurisdiction.py). Declared before the rates
    # so that their validators can see it.
    jurisdiction: str = Field(
        default=DEFAULT_JURISDICTION,
        description=f"Whose law sets the statutory floors: {', '.join(JURISDICTIONS)}",
    )
    # Net income distribution (item 11). team_reward_minimum is the institution's own minimum:
    # it defaults to the jurisdiction's floor and may raise it, never lower it. The team's rate
    # may not go below either; the team's share of each payment rounds up to the cent.
    team_reward_minimum: Rate = Field(
        default=Decimal("0.70"),
        description="The institution's own minimum team share; defaults to the statutory floor",
    )
    team_reward_rate: Rate = Decimal("0.70")
    tto_fund_rate: Rate = Decimal("0.10")
    # Evaluation.
    reviewer_count: int = Field(default=3, ge=1, le=15)
    review_sla: timedelta = timedelta(days=30)
    review_escalation_grace: timedelta = timedelta(days=7)
    transaction_min_score: Decimal = Field(default=Decimal("3.5"), ge=1, le=5)
    poc_min_score: Decimal = Field(default=Decimal("2.5"), ge=1, le=5)
    # Plan item 6: fields whose achievements an evaluation institution evaluates by default
    # instead of the panel (field -> the institution's code); a disclosure may choose otherwise.
    evaluation_institutions: dict[TechnologyField, EvaluatorCode] = Field(default_factory=dict)
    # Transaction.
    publicity_period: timedelta = timedelta(days=15)
    payment_grace: timedelta = timedelta(days=30)
    # When every listing expired without a deal: list again this many times, each this long
    # after the expiry; after that the achievement is held as a resource.
    relist_times: int = Field(default=1, ge=0, le=10)
    relist_after: timedelta = Field(default=timedelta(days=30), ge=timedelta(0))
    # Item 8: the mandatory listing falls due at this time of day (UTC) on the transformation
    # deadline; by default once the whole day has passed.
    mandatory_listing_due_time: UtcTimeOfDay = time.max
    # Proof of concept (items 3, 9): when each milestone falls due, counted from the application
    # to the fund; the fund plans the milestones by them, and the child waits by them.
    poc_milestone_offsets: tuple[timedelta, ...] = Field(
        default=(timedelta(days=90), timedelta(days=180), timedelta(days=270)),
        min_length=1,
        max_length=12,
    )

    @property
    def statute(self) -> Jurisdiction:
        return JURISDICTIONS[self.jurisdiction]

    @model_validator(mode="before")
    @classmethod
    def _minimum_defaults_to_the_floor(cls, data: Any) -> Any:
        if isinstance(data, dict) and "team_reward_minimum" not in data:
            code = data.get("jurisdiction", DEFAULT_JURISDICTION)
            if code in JURISDICTIONS:
                return {**data, "team_reward_minimum": JURISDICTIONS[code].team_reward_floor}
        return data

    @field_validator("jurisdiction")
    @classmethod
    def _known_jurisdiction(cls, value: str) -> str:
        if value not in JURISDICTIONS:
            raise ValueError(f"unknown jurisdiction {value!r}; known: {', '.join(JURISDICTIONS)}")
        return value

    @field_validator("team_reward_minimum", "team_reward_rate")
    @classmethod
    def _not_below_the_statutory_floor(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        code = info.data.get("jurisdiction")
        if code is None:  # the jurisdiction itself was refused; that error names it
            return value
        j = JURISDICTIONS[code]
        if value < j.team_reward_floor:
            raise ValueError(
                f"{info.field_name} {value} is below the statutory floor {j.team_reward_floor}"
                f" of jurisdiction {j.code} ({j.name}); a policy may raise it, never lower it"
            )
        return value

    @field_validator("mandatory_listing_due_time")
    @classmethod
    def _utc_time_of_day(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a UTC time of day, without an offset")
        return value

    @field_validator("poc_milestone_offsets")
    @classmethod
    def _milestones_after_one_another(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if value[0] <= timedelta(0) or any(b <= a for a, b in pairwise(value)):
            raise ValueError("milestone offsets must be positive and increasing")
        return value

    @model_validator(mode="after")
    def _rates_are_lawful(self) -> Policy:
        if self.team_reward_rate < self.team_reward_minimum:
            raise ValueError("team_reward_rate is below the institution's team_reward_minimum")
        if self.team_reward_rate + self.tto_fund_rate > 1:
            raise ValueError("team_reward_rate + tto_fund_rate exceed the whole net income")
        if self.poc_min_score > self.transaction_min_score:
            raise ValueError("poc_min_score must not exceed transaction_min_score")
        return self


DEFAULT_POLICY = Policy(institution_code="*", version="shanghai-2021.1")
