"""Read models of the list views and the event feed, served from PostgreSQL (not visibility)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MAX_PAGE = 500


class AchievementFilter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str | None = None
    institution: str | None = None
    field: str | None = None
    mode: str | None = None
    overdue: bool | None = Field(
        default=None, description="True: waiting past its deadline; False: not overdue"
    )
    mandatory_due_before: date | None = Field(
        default=None, description="Mandatory listing due strictly before this date"
    )


class AchievementRow(BaseModel):
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
    updated_at: AwareDatetime


class AchievementPage(BaseModel):
    items: list[AchievementRow]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; None: last")


class FeedEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    event_id: str
    achievement_id: str
    workflow_id: str
    institution_code: str
    type: str
    stage: str
    occurred_at: AwareDatetime
    source: str
    payload: dict[str, Any]


class EventPage(BaseModel):
    events: list[FeedEvent]
    next_after: int = Field(description="Resume from here: the seq of the last event returned")
