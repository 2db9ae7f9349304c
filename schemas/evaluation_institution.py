"""Evaluation by an evaluation institution (plan item 6), the alternative to the expert panel.

A disclosure may ask for it (`evaluation: {by: institution, institution: <code>}`), or the
institution's policy may make it the default for some technology fields. The workflow asks the
registry for the evaluation; the registry relays the institution's signed report back as a
registry webhook (`type: evaluation_report`), so no new secret is shared with each evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.disclosure import AchievementId, TechnologyField
from schemas.evaluation import ReviewScores
from schemas.text import Line

# An evaluation institution's code, as the registry accredits it (the same shape as an
# institution's code in a disclosure).
EVALUATOR_CODE_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,31}$"
EvaluatorCode = Annotated[str, Field(pattern=EVALUATOR_CODE_PATTERN)]
# What the registry numbers an evaluation request with, e.g. EVR-2026-000012.
RequestNumber = Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9/_.-]+$")]


class EvaluatedBy(StrEnum):
    PANEL = "panel"
    INSTITUTION = "institution"


class EvaluationChoice(BaseModel):
    """Who evaluates, as a disclosure asks: the expert panel, or an evaluation institution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: EvaluatedBy
    institution: EvaluatorCode | None = Field(
        default=None, description="The evaluation institution's code; required with by=institution"
    )

    @model_validator(mode="after")
    def _institution_named_when_by_one(self) -> EvaluationChoice:
        if self.by is EvaluatedBy.INSTITUTION and self.institution is None:
            raise ValueError("institution: required when by is institution")
        if self.by is EvaluatedBy.PANEL and self.institution is not None:
            raise ValueError("institution: only with by=institution (the panel is chosen)")
        return self


class InstitutionReport(ReviewScores):
    """An evaluation institution's report, as the workflow's signal takes it: the same four
    scores and recommendation as an expert's review, and who signed it."""

    event_id: Line = Field(min_length=1, max_length=100)
    achievement_id: AchievementId
    request_number: RequestNumber
    evaluator: EvaluatorCode
    report_number: Line = Field(min_length=1, max_length=64)
    signed_by: Line = Field(min_length=2, max_length=200, description="The signing appraiser")
    reported_at: AwareDatetime


class EvaluationReportWebhook(InstitutionReport):
    """The registry's relay of an institution's report (body of POST /webhooks/registry)."""

    type: Literal["evaluation_report"]


class EvaluationRequested(BaseModel):
    """The registry's receipt of the workflow's request, as the state keeps it."""

    model_config = ConfigDict(frozen=True)

    evaluator: Line
    request_number: Line
    requested_at: AwareDatetime


def chosen_evaluator(
    choice: EvaluationChoice | None,
    defaults: Mapping[TechnologyField, str],
    field: TechnologyField,
) -> str | None:
    """The evaluation institution that evaluates, or None for the panel: the disclosure's own
    choice first, else the policy's default for the achievement's field."""
    if choice is not None:
        return choice.institution if choice.by is EvaluatedBy.INSTITUTION else None
    return defaults.get(field)
