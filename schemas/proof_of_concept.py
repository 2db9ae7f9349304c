"""Proof of concept: fund application, milestones and the go/no-go gate (plan items 3, 9)."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.identity import Actor
from schemas.money import Money


class PocMilestone(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    milestone_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    due: date


class PocMilestoneReport(BaseModel):
    """Reported by the proof-of-concept fund."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=100)
    milestone_id: str = Field(min_length=1, max_length=64)
    achieved: bool
    reported_at: AwareDatetime


class GoNoGo(BaseModel):
    """The gate needs both technical and market feasibility for a 'go'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    technical_feasible: bool
    market_feasible: bool
    decided_by: str = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=2000)
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")

    @property
    def go(self) -> bool:
        return self.technical_feasible and self.market_feasible


class PocInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    achievement_id: str
    parent_workflow_id: str
    title: str
    institution_code: str
    trl: int
    # Empty: the fund's own milestones from the application answer.
    milestones: list[PocMilestone] = Field(default_factory=list)


class PocResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    application_number: str
    granted_amount: Money
    milestones_achieved: int
    milestones_overdue: list[str]
    go: bool
    reason: str
