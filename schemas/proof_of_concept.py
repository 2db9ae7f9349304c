"""Proof of concept: fund application, milestones and the go/no-go gate (plan items 3, 9)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.identity import Actor
from schemas.money import Money
from schemas.text import Line, Text


class PocMilestone(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    milestone_id: Line = Field(min_length=1, max_length=64)
    title: Line = Field(min_length=1, max_length=200)
    due: date
    # When it falls due, planned from the policy's offsets. None (milestones planned by date):
    # by the end of its due day (UTC).
    due_at: AwareDatetime | None = None

    @property
    def deadline(self) -> datetime:
        """When the milestone is overdue: its due moment, else the end of its due day (UTC)."""
        return self.due_at or datetime.combine(self.due, time.max, tzinfo=UTC)


class PocMilestoneReport(BaseModel):
    """Reported by the proof-of-concept fund."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    milestone_id: Line = Field(min_length=1, max_length=64)
    achieved: bool
    reported_at: AwareDatetime


class GoNoGo(BaseModel):
    """The gate needs both technical and market feasibility for a 'go'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    technical_feasible: bool
    market_feasible: bool
    decided_by: Line = Field(min_length=1, max_length=100)
    reason: Text = Field(default="", max_length=2000)
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")

    @property
    def go(self) -> bool:
        return self.technical_feasible and self.market_feasible


class PocInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    achievement_id: Line
    parent_workflow_id: Line
    title: Line
    institution_code: Line
    trl: int
    # Empty: the fund's own milestones from the application answer.
    milestones: list[PocMilestone] = Field(default_factory=list)
    # The policy's milestone schedule, counted from the application; empty: the fund's own.
    milestone_offsets: list[timedelta] = Field(default_factory=list)


class PocResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    application_number: Line
    granted_amount: Money
    milestones_achieved: int
    milestones_overdue: list[Line]
    go: bool
    reason: Text
    # Who took the gate (None in results recorded before the gateway knew people).
    decided_by: Line | None = None
    actor: Actor | None = None


class PocProgressKind(StrEnum):
    FUNDED = "funded"
    MILESTONE_REPORTED = "milestone_reported"
    MILESTONE_OVERDUE = "milestone_overdue"


class PocProgress(BaseModel):
    """What the proof-of-concept child tells its parent as it happens (signal `poc_progress`):
    the grant, a milestone reported, a milestone overdue. The parent records it as an event."""

    model_config = ConfigDict(frozen=True)

    # Deterministic in the child ("<child id>/<kind>[/<milestone id>]"): the parent applies
    # each once, however often it is delivered.
    event_id: Line
    kind: PocProgressKind
    occurred_at: AwareDatetime
    application_number: Line
    granted_amount: Money
    milestone: PocMilestone | None = None
    report: PocMilestoneReport | None = None
