"""The current-state row of an achievement, kept in step with its events in PostgreSQL."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class AchievementView(BaseModel):
    model_config = ConfigDict(frozen=True)

    achievement_id: str
    workflow_id: str
    institution_code: str
    title: str
    field: str
    stage: str
    modes: list[str]
    funding_kinds: list[str]
    mandatory_listing_due: date | None
    waiting_on: str | None
    waiting_until: AwareDatetime | None
    synthetic: bool
    updated_at: AwareDatetime
    panel: list[str] = Field(
        default_factory=list, description="The assigned experts' ids (empty in an expert's list)"
    )
    needs_attention_since: AwareDatetime | None = Field(
        default=None,
        description="Since when a person must act (a deadline passed, an escalation, a decision "
        "only a person can take); None while the lifecycle can move on by itself",
    )
    attention_reason: str | None = Field(
        default=None,
        description="Why a person must act: a keyword of schemas.lifecycle.AttentionReason, "
        "e.g. `review_escalated`, `payment_overdue`",
    )
    next_action: str | None = Field(
        default=None,
        description="What moves the lifecycle on: the command and the endpoint, in plain words",
    )
