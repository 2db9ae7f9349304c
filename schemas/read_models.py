"""Read models of the list views and the event feed, served from PostgreSQL (not visibility)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import LifecycleEvent
from schemas.views import AchievementView

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
    needs_attention: bool | None = Field(
        default=None,
        description="True: a person must act (NeedsAttentionSince is set); False: not",
    )
    # Set by the gateway from the caller's token, never from a query parameter.
    panel_member: str | None = Field(default=None, description="Assigned to this expert")


class ListedAchievement(AchievementView):
    """The row the projection writes, with where to open its workflow in the Temporal UI."""

    ui_url: str | None = Field(default=None, description="The workflow's Temporal Web UI page")


class AchievementPage(BaseModel):
    items: list[ListedAchievement]  # the row the projection writes is the row lists read
    next_cursor: str | None = Field(description="Pass as cursor for the next page; None: last")


class FeedEvent(LifecycleEvent):
    """A recorded lifecycle event with its position in the feed."""

    seq: int


class EventPage(BaseModel):
    events: list[FeedEvent]
    next_after: int = Field(description="Resume from here: the seq of the last event returned")
