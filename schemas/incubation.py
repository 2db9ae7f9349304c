"""Start-ups built on an achievement: company, equity, incubator, milestones, exit (items 2, 5)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.money import Money, Percent
from schemas.text import Line, Text


class CompanyFounded(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    company_name: Line = Field(min_length=2, max_length=200)
    # The 18-character unified social credit code of a Chinese legal entity.
    credit_code: Line = Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    equity_share: Percent
    valuation: Money
    founded_at: AwareDatetime


class EquityRegistration(BaseModel):
    model_config = ConfigDict(frozen=True)

    equity_certificate: Line
    state_owned_equity: bool
    registered_at: AwareDatetime
    # The part of the equity share registered for the research team (item 3); None: none.
    team_equity_share: Percent | None = None


class IncubatorAdmission(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    incubator: Line = Field(min_length=2, max_length=200)
    admitted_at: AwareDatetime


class IncubationMilestoneKind(StrEnum):
    FINANCING_ROUND = "financing_round"
    PRODUCT = "product"
    REVENUE = "revenue"


class IncubationMilestone(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    kind: IncubationMilestoneKind
    description: Text = Field(min_length=1, max_length=500)
    amount: Money | None = None
    reached_at: AwareDatetime


class ExitKind(StrEnum):
    GRADUATED = "graduated"
    ACQUIRED = "acquired"
    LISTED = "listed"
    FAILED = "failed"


class IncubationExit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    kind: ExitKind
    detail: Text = Field(default="", max_length=500)
    exited_at: AwareDatetime
