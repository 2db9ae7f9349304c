"""The operator overview: lifecycles per stage, and what is overdue or needs a person."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field


class StageCount(BaseModel):
    stage: str
    lifecycles: int = Field(ge=0)
    overdue: int = Field(ge=0, description="Waiting past their deadline (waiting_until < now)")
    needs_person: int = Field(ge=0, description="needs_attention_since is set")


class AttentionRow(BaseModel):
    """A lifecycle that is overdue or needs a person, and what moves it on."""

    achievement_id: str
    workflow_id: str
    institution_code: str
    title: str
    stage: str
    waiting_on: str | None
    waiting_until: AwareDatetime | None
    needs_attention_since: AwareDatetime | None
    attention_reason: str | None
    next_action: str | None
    since: AwareDatetime = Field(description="The earlier of the deadline and the mark: the order")
    overdue: bool
    ui_url: str | None = Field(default=None, description="The workflow's Temporal Web UI page")


class Overview(BaseModel):
    generated_at: AwareDatetime
    institution: str | None = Field(description="The institution shown; None: every one")
    stages: list[StageCount] = Field(description="Every stage with at least one lifecycle")
    attention: list[AttentionRow] = Field(description="Overdue or needing a person, oldest first")
    more_attention: bool = Field(description="More rows need attention than are listed")
