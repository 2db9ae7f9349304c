"""Pure functions of the lifecycle state: the plan's rules, and the views other systems see.

No I/O and no clock of their own (the caller passes workflow time), so the workflow can use
them deterministically and unit tests can check them directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from temporalio.common import SearchAttributeUpdate

from schemas.disclosure import Disclosure, FundingKind, TransformationMode
from schemas.evaluation import Recommendation
from schemas.lifecycle import LifecycleResult, LifecycleState, Stage
from schemas.transaction import Listing, ListingStatus, Payment
from schemas.views import AchievementView
from workflows import search_attributes as sa

# Modes that go through a technology contract on the exchange, and those that found a company.
CONTRACT_MODES = frozenset(
    {
        TransformationMode.TRANSFER,
        TransformationMode.LICENCE,
        TransformationMode.COOPERATIVE_IMPLEMENTATION,
    }
)
COMPANY_MODES = frozenset(
    {TransformationMode.EQUITY_INVESTMENT, TransformationMode.SELF_IMPLEMENTATION}
)
# Below this TRL an achievement is not offered on the market, whatever its scores.
MARKET_READY_TRL = 6


def route(s: LifecycleState) -> tuple[Recommendation, Decimal | None, str]:
    """Where evaluation sends the achievement: (route, mean score, decided by)."""
    policy = s.policy
    mean: Decimal | None = None
    if s.operator_decision is not None:
        chosen = s.operator_decision.route
        decided_by = f"operator:{s.operator_decision.decided_by}"
    else:
        mean = sum((r.mean for r in s.reviews), Decimal(0)) / len(s.reviews)
        abandon_votes = sum(1 for r in s.reviews if r.recommendation is Recommendation.ABANDON)
        if mean >= policy.transaction_min_score and s.disclosure.trl >= MARKET_READY_TRL:
            chosen = Recommendation.TRANSACTION
        elif mean >= policy.poc_min_score:
            chosen = Recommendation.PROOF_OF_CONCEPT
        elif abandon_votes * 2 > len(s.reviews):
            chosen = Recommendation.ABANDON
        else:
            chosen = Recommendation.RESOURCE
        decided_by = "expert panel"
    municipal = any(f.kind is FundingKind.MUNICIPAL_FINANCE for f in s.disclosure.funding)
    if chosen is Recommendation.ABANDON and municipal:
        # Item 8: fiscal money is never silently abandoned; it stays under its listing clock.
        chosen = Recommendation.RESOURCE
        decided_by += " (abandon overridden: municipal finance)"
    return chosen, mean, decided_by


def mandatory_due_at(s: LifecycleState) -> datetime | None:
    """When the mandatory listing of item 8 fires, or None when it cannot (any more).

    Armed until a contract or equity registration exists, except while the achievement is on
    the market: in transaction it stays armed once every listing lapsed (expired) without a
    deal, for an expired voluntary listing is no transformation.
    """
    deadline = s.disclosure.municipal_deadline
    if (
        deadline is None
        or s.mandatory_listing_exempted
        or s.mandatory_listing_triggered
        or s.contract is not None
        or s.equity is not None
        or s.deal is not None
        or (s.stage is Stage.TRANSACTION and s.listings_lapsed_at is None)
        or s.stage is Stage.REPORTING
        or s.stage.is_final
    ):
        return None
    return datetime.combine(deadline, s.policy.mandatory_listing_due_time, tzinfo=UTC)


def disclosed_payload(d: Disclosure) -> dict[str, Any]:
    """What reports count by (type, source, people); never the confidential summary."""
    return {
        "title": d.title,
        "modes": [m.value for m in d.intended_modes],
        "field": d.field.value,
        "trl": d.trl,
        "ip_kinds": [a.kind.value for a in d.ip_assets],
        "funding_kinds": sorted({f.kind.value for f in d.funding}),
        "institution_kind": d.institution.kind.value,
        "state_owned": d.institution.state_owned,
        # Reports count the people rewarded; shares say who gets what of the team reward.
        "inventors": [{"name": i.name, "share": str(i.share)} for i in d.inventors],
        "ownership": d.ownership.kind.value,
        "synthetic": d.synthetic,
    }


def view(s: LifecycleState, now: datetime) -> AchievementView:
    """The current-state row that list views read."""
    return AchievementView(
        achievement_id=s.achievement_id,
        workflow_id=s.workflow_id,
        institution_code=s.disclosure.institution.code,
        title=s.disclosure.title,
        field=s.disclosure.field.value,
        stage=s.stage.value,
        modes=[m.value for m in s.modes],
        funding_kinds=sorted({f.kind.value for f in s.disclosure.funding}),
        mandatory_listing_due=None
        if s.mandatory_listing_exempted
        else s.disclosure.municipal_deadline,
        waiting_on=s.waiting.on if s.waiting else None,
        waiting_until=s.waiting.until if s.waiting else None,
        synthetic=s.disclosure.synthetic,
        updated_at=now,
        panel=list(s.reviewers),
    )


def search_attributes(s: LifecycleState) -> list[SearchAttributeUpdate[Any]]:
    """What operators filter by in the Temporal UI."""
    due = mandatory_due_at(s)
    return [
        sa.STAGE.value_set(s.stage.value),
        sa.INSTITUTION.value_set(s.disclosure.institution.code),
        sa.TECHNOLOGY_FIELD.value_set(s.disclosure.field.value),
        sa.TRANSFORMATION_MODES.value_set([m.value for m in s.modes]),
        sa.FUNDING_SOURCES.value_set(sorted({f.kind.value for f in s.disclosure.funding})),
        sa.MANDATORY_LISTING_DUE.value_set(due)
        if due is not None
        else sa.MANDATORY_LISTING_DUE.value_unset(),
    ]


def result(s: LifecycleState) -> LifecycleResult:
    """The summary of a whole life, returned when the workflow ends."""
    received = sum((p.payment.amount for p in s.payments), Decimal("0.00"))
    reward = sum((p.distribution.team_reward for p in s.payments), Decimal("0.00"))
    return LifecycleResult(
        achievement_id=s.achievement_id,
        final_stage=s.stage,
        registration_number=s.registration_number,
        route=s.evaluation.route.value if s.evaluation else None,
        contract_certificate=s.contract.certificate_number if s.contract else None,
        total_received=str(received),
        team_reward_paid=str(reward),
        company=s.company.company_name if s.company else None,
        report_number=s.report_number,
        reason=s.outcome_reason,
        stages=s.timeline,
    )


# ---------------------------------------------------------------------------- external events


class PaymentCheck(StrEnum):
    APPLY = "apply"
    NO_SUCH_DEAL = "no such deal"
    ALREADY_RECORDED = "instalment already recorded"


def listing_of(s: LifecycleState, listing_id: str) -> Listing | None:
    """One of this achievement's listings, or None for another's (or an unknown id)."""
    return next((x for x in s.listings if x.listing_id == listing_id), None)


def on_another_exchange(listing: Listing | None, exchange: str) -> bool:
    """An event about one of our listings, sent by an exchange the listing is not on."""
    return listing is not None and listing.exchange != exchange


def current_listings(s: LifecycleState) -> list[Listing]:
    """The listings of the current round (earlier rounds expired)."""
    return [x for x in s.listings if x.listing_round == s.listing_round]


def listings_lapsed(s: LifecycleState) -> bool:
    """Every listing of the current round closed without a deal: nothing left to wait on."""
    current = current_listings(s)
    return (
        s.deal is None
        and bool(current)
        and all(x.status is not ListingStatus.OPEN for x in current)
    )


def deal_ignored(s: LifecycleState, listing: Listing | None) -> bool:
    """A deal for no listing of ours, or outside the transaction stage: nothing to decide."""
    return listing is None or s.stage is not Stage.TRANSACTION


def deal_refusal(s: LifecycleState, listing: Listing, now: datetime) -> str | None:
    """Why a deal on one of our listings is refused, or None: the first deal after the
    publicity period wins (items 8 and 10)."""
    if s.deal is not None:
        return "another deal closed first"
    if now < listing.publicity_ends_at:
        return "publicity period not over"
    return None


def payment_check(s: LifecycleState, payment: Payment) -> PaymentCheck:
    """Whether an instalment applies: to the deal that won, once per instalment."""
    if s.deal is None or payment.listing_id != s.deal.listing_id:
        return PaymentCheck.NO_SUCH_DEAL
    if any(p.payment.instalment == payment.instalment for p in s.payments):
        return PaymentCheck.ALREADY_RECORDED
    return PaymentCheck.APPLY


def incubator_accepts(s: LifecycleState) -> bool:
    """Incubator events count once a company is on the way (incubation, or a transaction by a
    company-founding mode), never before."""
    return s.stage is Stage.INCUBATION or (
        s.stage is Stage.TRANSACTION and bool(set(s.modes) & COMPANY_MODES)
    )
