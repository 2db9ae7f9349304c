"""Start-ups built on an achievement: company, equity, incubator, milestones, exit (items 2, 5)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.money import Money


class CompanyFounded(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=100)
    company_name: str = Field(min_length=2, max_length=200)
    # The 18-character unified social credit code of a Chinese legal entity.
    credit_code: str = Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    equity_share: Decimal = Field(gt=0, le=100, decimal_places=2)
    valuation: Money
    founded_at: AwareDatetime


class EquityRegistration(BaseModel):
    model_config = ConfigDict(frozen=True)

    equity_certificate: str
    state_owned_equity: bool
    registered_at: AwareDatetime


class IncubatorAdmission(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=100)
    incubator: str = Field(min_length=2, max_length=200)
    admitted_at: AwareDatetime


class IncubationMilestoneKind(StrEnum):
    FINANCING_ROUND = "financing_round"
    PRODUCT = "product"
    REVENUE = "revenue"


class IncubationMilestone(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=100)
    kind: IncubationMilestoneKind
    description: str = Field(min_length=1, max_length=500)
    amount: Money | None = None
    reached_at: AwareDatetime


class ExitKind(StrEnum):
    GRADUATED = "graduated"
    ACQUIRED = "acquired"
    LISTED = "listed"
    FAILED = "failed"


class IncubationExit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=100)
    kind: ExitKind
    detail: str = Field(default="", max_length=500)
    exited_at: AwareDatetime
