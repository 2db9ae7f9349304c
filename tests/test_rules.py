"""Unit tests of the lifecycle's pure rules (routing, the mandatory-listing clock, views)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from cli.samples import scenario
from schemas.evaluation import OperatorDecision, Recommendation, Review
from schemas.lifecycle import LifecycleState, Stage
from schemas.policy import DEFAULT_POLICY, Policy
from workflows import rules


def _state(index: int, **changes: object) -> LifecycleState:
    sc = scenario(index, "RULES", date(2026, 1, 1))
    state = LifecycleState(
        achievement_id=sc.disclosure.achievement_id,
        workflow_id="wf",
        disclosure=sc.disclosure,
        policy=DEFAULT_POLICY,
        exchanges=sc.exchanges,
        reviewers=sc.reviewers,
        asking_price=sc.asking_price,
        pricing=sc.pricing,
    )
    return state.model_copy(update=changes)


def _reviews(score: int, rec: Recommendation, n: int = 3) -> list[Review]:
    return [
        Review(reviewer_id=f"r-{i}", novelty=score, maturity=score, market=score,
               ip_strength=score, recommendation=rec)
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("score", "trl", "expected"),
    [
        (4, 7, Recommendation.TRANSACTION),
        (4, 5, Recommendation.PROOF_OF_CONCEPT),  # good scores, but not mature enough
        (3, 7, Recommendation.PROOF_OF_CONCEPT),
        (2, 7, Recommendation.RESOURCE),
    ],
)
def test_route_by_mean_score_and_maturity(score: int, trl: int, expected: Recommendation) -> None:
    s = _state(1)
    s = s.model_copy(
        update={
            "reviews": _reviews(score, Recommendation.RESOURCE),
            "disclosure": s.disclosure.model_copy(update={"trl": trl}),
        }
    )
    chosen, mean, by = rules.route(s)
    assert (chosen, mean, by) == (expected, Decimal(score), "expert panel")


def test_abandon_majority_is_abandoned_unless_municipal_money() -> None:
    national = _state(1, reviews=_reviews(1, Recommendation.ABANDON))
    assert rules.route(national)[0] is Recommendation.ABANDON
    municipal = _state(0, reviews=_reviews(1, Recommendation.ABANDON))
    chosen, _, by = rules.route(municipal)
    assert chosen is Recommendation.RESOURCE and "municipal" in by


def test_operator_decision_overrides_the_panel() -> None:
    decision = OperatorDecision(
        route=Recommendation.TRANSACTION, decided_by="director", reason="strategic buyer"
    )
    s = _state(1, reviews=_reviews(1, Recommendation.ABANDON), operator_decision=decision)
    assert rules.route(s) == (Recommendation.TRANSACTION, None, "operator:director")


def test_mandatory_clock_runs_only_for_untransformed_municipal_money() -> None:
    s = _state(0, stage=Stage.RESOURCE)
    deadline = s.disclosure.municipal_deadline
    assert deadline is not None
    assert rules.mandatory_due_at(s) == datetime.combine(deadline, datetime.max.time(), UTC)
    assert rules.mandatory_due_at(_state(1, stage=Stage.RESOURCE)) is None  # national money
    assert rules.mandatory_due_at(s.model_copy(update={"mandatory_listing_exempted": True})) is None
    assert rules.mandatory_due_at(s.model_copy(update={"stage": Stage.TRANSACTION})) is None
    assert rules.mandatory_due_at(s.model_copy(update={"stage": Stage.COMPLETED})) is None


def test_policy_may_set_the_hour_the_mandatory_listing_falls_due() -> None:
    policy = DEFAULT_POLICY.model_copy(update={"mandatory_listing_due_time": time(9, 30)})
    s = _state(0, stage=Stage.RESOURCE, policy=policy)
    deadline = s.disclosure.municipal_deadline
    assert deadline is not None
    assert rules.mandatory_due_at(s) == datetime(
        deadline.year, deadline.month, deadline.day, 9, 30, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="mandatory_listing_due_time"):
        Policy.model_validate(
            {"institution_code": "*", "version": "x", "mandatory_listing_due_time": "09:30+08:00"}
        )


def test_view_hides_an_exempted_deadline_and_disclosed_payload_keeps_the_summary_out() -> None:
    s = _state(0, mandatory_listing_exempted=True)
    assert rules.view(s, datetime.now(UTC)).mandatory_listing_due is None
    payload = rules.disclosed_payload(s.disclosure)
    assert s.disclosure.summary not in str(payload)
    assert len(payload["inventors"]) == len(s.disclosure.inventors)
