"""The gateway's own request and response bodies (its OpenAPI contract), shared with the CLI.

People's request bodies carry no identity field: who acts comes from the verified bearer
token, and the gateway fills `reviewer_id`, `decided_by`, `activated_by`, `requested_by`,
`approved_by` and `disclosed_by` from it. A body that still sends one is refused (422, the
field named as not permitted), so a caller can never speak for someone else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.disclosure import Disclosure, TransformationMode
from schemas.evaluation import Recommendation, Review, ReviewScores
from schemas.evaluation_institution import EvaluationChoice
from schemas.exchange_api import KNOWN_EXCHANGES
from schemas.lifecycle import LifecycleState, Waiting
from schemas.money import Money
from schemas.proof_of_concept import PocResult
from schemas.read_models import FeedEvent
from schemas.text import Text
from schemas.transaction import PricingMethod
from schemas.views import AchievementView

# Same rule as Review.reviewer_id: an expert's token subject is their reviewer id.
REVIEWER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"
MAX_PANEL = 15


class DisclosureRequest(BaseModel):
    """An institution officer discloses an achievement of their own institution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    disclosure: Disclosure
    reviewers: list[Annotated[str, Field(pattern=REVIEWER_ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_PANEL,
        description="The assigned expert panel: each expert's token subject, no repeats, "
        "at least the policy's reviewer count; none when an evaluation institution evaluates",
    )
    exchanges: list[str] = Field(default_factory=lambda: ["sstec"], min_length=1, max_length=4)
    asking_price: Money
    pricing: PricingMethod
    evaluation: EvaluationChoice | None = Field(
        default=None,
        description="Who evaluates (plan item 6): the expert panel, or an evaluation "
        "institution by its code; omitted, the policy's default for the field (else the panel)",
    )

    @field_validator("reviewers")
    @classmethod
    def _distinct_reviewers(cls, reviewers: list[str]) -> list[str]:
        repeated = sorted({r for r in reviewers if reviewers.count(r) > 1})
        if repeated:
            raise ValueError(f"reviewers must not repeat: {repeated}")
        return reviewers

    @field_validator("exchanges")
    @classmethod
    def _known_exchanges(cls, exchanges: list[str]) -> list[str]:
        unknown = [x for x in exchanges if x not in KNOWN_EXCHANGES]
        if unknown:
            raise ValueError(f"unknown exchange(s) {unknown}; known: {list(KNOWN_EXCHANGES)}")
        if len(set(exchanges)) != len(exchanges):
            raise ValueError("exchanges must not repeat")
        return exchanges


class ReviewRequest(ReviewScores):
    """An assigned expert's scored review; the reviewer is the token's subject."""


class DecisionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    route: Recommendation
    reason: Text = Field(min_length=3, max_length=2000)


class ActivationRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    modes: list[TransformationMode] = Field(min_length=1, max_length=5)
    reason: Text = Field(default="", max_length=2000)


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Text = Field(min_length=3, max_length=2000)
    abandon: bool = False


class ExemptionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    justification: Text = Field(min_length=10, max_length=2000)


class GoNoGoRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    technical_feasible: bool
    market_feasible: bool
    reason: Text = Field(default="", max_length=2000)


# ---------------------------------------------------------------------------- answers


class AchievementBrief(BaseModel):
    """What an assigned expert (with the summary) or the PoC fund (without it) may read."""

    achievement_id: str
    institution_code: str
    title: str
    field: str
    trl: int
    stage: str
    summary: str | None = Field(description="Only for the assigned panel")
    waiting: Waiting | None
    my_review: Review | None = Field(default=None, description="The caller's own review")
    poc: PocResult | None = None


class Me(BaseModel):
    subject: str
    name: str | None
    institution: str | None
    roles: list[str]
    may: dict[str, str] = Field(description="Operation → how far the caller's roles reach")


class Started(BaseModel):
    achievement_id: str
    workflow_id: str
    run_id: str
    policy_version: str
    duplicate: bool = False


class UpdateResult(BaseModel):
    achievement_id: str
    result: str | int | bool


class Accepted(BaseModel):
    accepted: bool = True
    event_id: str


class Health(BaseModel):
    """`/healthz`: overall, then each dependency (ok, unavailable or not configured)."""

    status: Literal["ok", "unavailable"]
    temporal: Literal["ok", "unavailable"]
    postgres: Literal["ok", "unavailable", "not configured"]


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrors(BaseModel):
    detail: list[FieldError]


class Problem(BaseModel):
    detail: str
    field: str | None = None


class AchievementState(LifecycleState):
    """A running (or not yet deleted) lifecycle's whole state, as its workflow answers it."""

    source: Literal["workflow"] = "workflow"
    ui_url: str = Field(description="The workflow's page in the Temporal Web UI")


class ArchivedAchievement(BaseModel):
    """A closed lifecycle whose workflow the namespace's retention has deleted: its final
    projection row and its recorded events, from PostgreSQL."""

    source: Literal["archive"] = "archive"
    closed: Literal[True] = True
    achievement_id: str
    achievement: AchievementView = Field(description="The final current-state row")
    timeline: list[FeedEvent] = Field(description="Every recorded event, oldest first")
