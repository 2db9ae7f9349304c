"""Wire contract of the S&T achievement registry (registration of achievements, contracts,
equity, proof-of-concept funding and reports). Shared by the client and the sandbox."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from schemas.disclosure import IPAssetKind, TechnologyField
from schemas.money import Money, Percent
from schemas.proof_of_concept import PocMilestone
from schemas.text import Line, Text
from schemas.transaction import ContractType


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegisterAchievementRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    title: Line = Field(min_length=3, max_length=300)
    institution_code: Line = Field(min_length=2, max_length=32)
    field: TechnologyField
    trl: int = Field(ge=1, le=9)
    ip_kinds: list[IPAssetKind] = Field(default_factory=list)
    synthetic: bool = False


class AchievementRegistration(BaseModel):
    registration_number: Line
    registered_at: AwareDatetime


class RegisterContractRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    registration_number: Line = Field(min_length=1)
    contract_type: ContractType
    amount: Money
    buyer: Line = Field(min_length=1, max_length=200)
    seller_institution: Line = Field(min_length=2, max_length=32)
    exchange: Line | None = None


class ContractRegistrationResponse(BaseModel):
    certificate_number: Line
    verified_amount: Money
    tax_preference_eligible: bool
    registered_at: AwareDatetime


class RegisterEquityRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    company_name: Line = Field(min_length=2, max_length=200)
    credit_code: Line = Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    equity_share: Percent
    valuation: Money
    state_owned: bool
    # Item 3: the part of equity_share registered for the research team, which owns the
    # achievement in whole or in part or holds a right of use; the rest is the institution's.
    # None (as before ownership was modelled): the institution holds it all.
    team_equity_share: Percent | None = None

    @field_validator("team_equity_share")
    @classmethod
    def _team_part_within_the_share(
        cls, value: Decimal | None, info: ValidationInfo
    ) -> Decimal | None:
        whole = info.data.get("equity_share")
        if value is not None and whole is not None and value > whole:
            raise ValueError(f"team_equity_share exceeds equity_share ({whole})")
        return value


class EquityRegistrationResponse(BaseModel):
    equity_certificate: Line
    # Only the institution's part of a state-owned institution's equity is state-owned.
    state_owned_equity: bool
    registered_at: AwareDatetime
    team_equity_share: Percent | None = None


class PocApplicationRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    title: Line = Field(min_length=3, max_length=300)
    institution_code: Line = Field(min_length=2, max_length=32)
    trl: int = Field(ge=1, le=9)
    applied_on: date
    # The applicant's milestone schedule, counted from applied_at (ISO 8601 durations). Without
    # it the fund plans its own: 90, 180 and 270 days from applied_on, each by the end of its day.
    applied_at: AwareDatetime | None = None
    milestone_offsets: list[timedelta] | None = Field(default=None, min_length=1, max_length=12)

    @field_validator("milestone_offsets")
    @classmethod
    def _positive(cls, value: list[timedelta] | None) -> list[timedelta] | None:
        if value is not None and any(offset <= timedelta(0) for offset in value):
            raise ValueError("every milestone offset must be positive")
        return value


class PocApplicationResponse(BaseModel):
    application_number: Line
    granted_amount: Money
    milestones: list[PocMilestone]


class PocCancellationRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    reason: Text = Field(min_length=3, max_length=500)


class PocCancellationResponse(BaseModel):
    """The application as cancelled: the same answer however often it is asked."""

    application_number: Line
    granted_amount: Money
    cancelled_at: AwareDatetime
    reason: Text


class LifecycleReportRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    registration_number: Line | None = None
    final_stage: Line
    summary: dict[str, Any]


class AnnualReportRequest(_Request):
    institution_code: Line = Field(min_length=2, max_length=32)
    year: int = Field(ge=2000, le=2100)
    report: dict[str, Any]


class ReportReceipt(BaseModel):
    receipt_number: Line
    received_at: AwareDatetime


class ApiError(BaseModel):
    """Error body of both external systems: a type a client can map, and the bad fields."""

    type: Line
    message: Text
    fields: list[Line] = Field(default_factory=list)


# Evaluation by an evaluation institution (plan item 6): the registry forwards the request to
# the accredited institution and relays its signed report back as a webhook.


class EvaluationRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    registration_number: Line | None = None
    evaluator: Line = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")
    title: Line = Field(min_length=3, max_length=300)
    institution_code: Line = Field(min_length=2, max_length=32)
    field: TechnologyField
    trl: int = Field(ge=1, le=9)
    # When the requester expects the report (its SLA); the institution is reminded after it.
    report_due_at: AwareDatetime


class EvaluationRequestReceipt(BaseModel):
    """The same answer however often the same request is sent."""

    request_number: Line
    evaluator: Line
    requested_at: AwareDatetime


class EvaluationReminder(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    # The report is now due by then, after which the requester escalates.
    report_due_at: AwareDatetime


class EvaluationReminderReceipt(BaseModel):
    request_number: Line
    reminded_at: AwareDatetime
