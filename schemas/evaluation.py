"""Expert reviews, their aggregate and the route they give (plan items 4 and 6)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.identity import Actor
from schemas.text import Line, Text

Score = int  # 1 (poor) .. 5 (excellent); bounds are enforced on the fields below


class Recommendation(StrEnum):
    PROOF_OF_CONCEPT = "proof_of_concept"
    TRANSACTION = "transaction"
    RESOURCE = "resource"
    ABANDON = "abandon"


class ReviewScores(BaseModel):
    """What an expert judges: four scores, a recommendation and a comment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    novelty: int = Field(ge=1, le=5)
    maturity: int = Field(ge=1, le=5)
    market: int = Field(ge=1, le=5)
    ip_strength: int = Field(ge=1, le=5)
    recommendation: Recommendation
    comment: Text = Field(default="", max_length=4000)

    @property
    def mean(self) -> Decimal:
        return Decimal(self.novelty + self.maturity + self.market + self.ip_strength) / 4


class Review(ReviewScores):
    """A review as the workflow records it: the scores and who gave them."""

    reviewer_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")


class TechnologySearchResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    similar_listings: int = Field(ge=0)
    matching_demands: int = Field(ge=0)
    top_matches: list[Line] = Field(default_factory=list)


class OperatorDecision(BaseModel):
    """An operator's routing decision, e.g. after a review SLA escalation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    route: Recommendation
    decided_by: Line = Field(min_length=1, max_length=100)
    reason: Text = Field(min_length=3, max_length=2000)
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")


class EvaluationOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    route: Recommendation
    mean_score: Decimal | None
    decided_at: AwareDatetime
    decided_by: Line
