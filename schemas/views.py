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
