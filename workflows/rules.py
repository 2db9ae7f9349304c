"""Pure functions of the lifecycle state: the plan's rules, and the views other systems see.

No I/O and no clock of their own (the caller passes workflow time), so the workflow can use
them deterministically and unit tests can check them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from temporalio.common import SearchAttributeUpdate

from schemas.disclosure import Disclosure, FundingKind, TransformationMode
from schemas.evaluation import Recommendation, ReviewScores
from schemas.events import EventType
from schemas.lifecycle import LifecycleResult, LifecycleState, Stage
from schemas.proof_of_concept import PocProgress, PocProgressKind
from schemas.refusals import ExternalEvent
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
        # An evaluation institution's report routes as a panel of one would (plan item 6).
        scored: Sequence[ReviewScores] = s.reviews
        decided_by = "expert panel"
        if s.institution_report is not None:
            scored = [s.institution_report]
            decided_by = f"evaluation institution {s.institution_report.evaluator}"
        mean = sum((r.mean for r in scored), Decimal(0)) / len(scored)
        abandon_votes = sum(1 for r in scored if r.recommendation is Recommendation.ABANDON)
        if mean >= policy.transaction_min_score and s.disclosure.trl >= MARKET_READY_TRL:
            chosen = Recommendation.TRANSACTION
        elif mean >= policy.poc_min_score:
            chosen = Recommendation.PROOF_OF_CONCEPT
        elif abandon_votes * 2 > len(scored):
            chosen = Recommendation.ABANDON
        else:
            chosen = Recommendation.RESOURCE
    if abandon_overridden(s, chosen):
        # Item 8: fiscal money is never silently abandoned; it stays under its listing clock.
        chosen = Recommendation.RESOURCE
        decided_by += f" ({ABANDON_OVERRIDDEN})"
    return chosen, mean, decided_by


ABANDON_OVERRIDDEN = "abandon overridden: municipal finance"


def abandon_overridden(s: LifecycleState, chosen: Recommendation) -> bool:
    """An abandon (the experts' or an operator's) that municipal finance turns into a resource."""
    municipal = any(f.kind is FundingKind.MUNICIPAL_FINANCE for f in s.disclosure.funding)
    return chosen is Recommendation.ABANDON and municipal


def operator_route_answer(s: LifecycleState, chosen: Recommendation) -> str:
    """What an operator's routing decision answers: the route that will be taken."""
    if abandon_overridden(s, chosen):
        return f"{Recommendation.RESOURCE.value} ({ABANDON_OVERRIDDEN})"
    return chosen.value


def two_places(mean: Decimal) -> Decimal:
    """A mean score as people read it (3 reviews give thirds: 2.83, not 28 digits). Routing
    compares the exact mean; only what is shown and recorded is rounded."""
    return mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def missing_reviews(s: LifecycleState) -> dict[str, Any]:
    """Who has not reviewed yet, and how many reviews are missing (without an assigned panel
    the names are unknown, the count is not)."""
    done = {r.reviewer_id for r in s.reviews}
    return {
        "missing": [r for r in s.reviewers if r not in done],
        "missing_reviews": max(0, s.policy.reviewer_count - len(s.reviews)),
    }


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
        # Added with ownership shares; disclosed events recorded before lack them.
        "ownership_terms": d.ownership.model_dump(mode="json", exclude={"kind"}, exclude_none=True),
        "synthetic": d.synthetic,
    }


def disclosed_on(s: LifecycleState) -> date:
    """The day the lifecycle began, from which a right of use without a grant date runs."""
    return s.timeline[0].entered_at.date()


def institution_part(s: LifecycleState, on: datetime) -> Decimal:
    """The institution's part (0 to 1) of what the achievement earns at `on` (plan item 3)."""
    return s.disclosure.ownership.institution_part(on.date(), disclosed_on(s))


def equity_shares(
    s: LifecycleState, equity_share: Decimal, on: datetime
) -> tuple[Decimal, Decimal]:
    """The company's equity contributed by the achievement, as (institution's, team's) per
    cent: split by ownership as income is, the team's part rounded up to the hundredth."""
    part = institution_part(s, on)
    team = (equity_share * (1 - part)).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return equity_share - team, team


def mandatory_listing_due(s: LifecycleState) -> date | None:
    """The mandatory-listing due date as lists and the UI show it: an open obligation, set only
    while the achievement must still be listed (the clock is armed: `mandatory_due_at`); None
    once exempted, listed under the clock, on the market, contracted or ending."""
    due = mandatory_due_at(s)
    return due.date() if due is not None else None


class EquityReward(NamedTuple):
    """The team's part of the equity an achievement was invested as, in per cent of the company."""

    team_owned: Decimal  # what the team owns itself (ownership, plan item 3)
    team_reward: Decimal  # its reward out of the institution's part (plan items 2 and 3)
    rate: Decimal  # the reward's rate of the institution's part: at least the statutory floor

    @property
    def team(self) -> Decimal:
        return self.team_owned + self.team_reward


def equity_reward(s: LifecycleState, equity_share: Decimal, on: datetime) -> EquityReward:
    """The team's equity: its own part by ownership, plus its reward of the institution's part
    at the policy's team rate but never below the jurisdiction's equity floor. Both round up to
    the hundredth, for the team is the party the statute protects; a hundredth never exceeds
    the institution's part, which is itself in hundredths."""
    institution, owned = equity_shares(s, equity_share, on)
    rate = max(s.policy.team_reward_rate, s.policy.statute.team_equity_floor)
    reward = (institution * rate).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return EquityReward(team_owned=owned, team_reward=reward, rate=rate)


def service_fee_due(s: LifecycleState) -> Decimal:
    """What is left of the accepted deal's service fee after the payments recorded so far."""
    if s.deal is None:
        return Decimal("0.00")
    paid = sum((p.distribution.service_fee for p in s.payments), Decimal("0.00"))
    return s.deal.service_fee - paid


def view(s: LifecycleState, now: datetime) -> AchievementView:
    """The current-state row that list views read; it says what the search attributes say."""
    w = s.waiting
    return AchievementView(
        achievement_id=s.achievement_id,
        workflow_id=s.workflow_id,
        institution_code=s.disclosure.institution.code,
        title=s.disclosure.title,
        field=s.disclosure.field.value,
        stage=s.stage.value,
        modes=[m.value for m in s.modes],
        funding_kinds=sorted({f.kind.value for f in s.disclosure.funding}),
        mandatory_listing_due=mandatory_listing_due(s),
        waiting_on=w.on if w else None,
        waiting_until=w.until if w else None,
        synthetic=s.disclosure.synthetic,
        updated_at=now,
        panel=list(s.reviewers),
        needs_attention_since=w.attention_since if w else None,
        attention_reason=w.attention_reason.value if w and w.attention_reason else None,
        next_action=w.next_action if w else None,
    )


def attention_attributes(s: LifecycleState) -> list[SearchAttributeUpdate[Any]]:
    """NeedsAttentionSince and AttentionReason: set while a person must act, unset otherwise."""
    w = s.waiting
    if w is None or w.attention_since is None or w.attention_reason is None:
        return [sa.NEEDS_ATTENTION_SINCE.value_unset(), sa.ATTENTION_REASON.value_unset()]
    return [
        sa.NEEDS_ATTENTION_SINCE.value_set(w.attention_since),
        sa.ATTENTION_REASON.value_set(w.attention_reason.value),
    ]


def search_attributes(
    s: LifecycleState, attention: bool = False
) -> list[SearchAttributeUpdate[Any]]:
    """What operators filter by in the Temporal UI. `attention`: with NeedsAttentionSince and
    AttentionReason (lifecycles recorded before the needs-attention-marked patch upsert without)."""
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
        *(attention_attributes(s) if attention else []),
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


def poc_progress_event(p: PocProgress) -> tuple[EventType, dict[str, Any], str, str | None]:
    """The event of what the proof-of-concept child reported, as it happened: (type, payload,
    source, what the child's end must not record again, if anything)."""
    payload: dict[str, Any]
    if p.kind is PocProgressKind.FUNDED:
        payload = {
            "application_number": p.application_number,
            "granted_amount": str(p.granted_amount),
        }
        return EventType.POC_FUNDED, payload, "registry", "funded"
    milestone = p.milestone
    due = milestone.deadline if milestone is not None else None
    if p.kind is PocProgressKind.MILESTONE_OVERDUE:
        assert milestone is not None and due is not None
        payload = {
            "milestone_id": milestone.milestone_id,
            "title": milestone.title,
            "due": due.isoformat(),
        }
        return (
            EventType.POC_MILESTONE_OVERDUE,
            payload,
            "poc-fund",
            f"overdue/{payload['milestone_id']}",
        )
    report = p.report
    assert report is not None
    payload = {
        "milestone_id": report.milestone_id,
        "title": milestone.title if milestone is not None else None,
        "achieved": report.achieved,
        "reported_at": report.reported_at.isoformat(),
        "due": due.isoformat() if due is not None else None,
        # Received by the fund's deadline (late reports are recorded too, and say so).
        "on_time": p.occurred_at <= due if due is not None else None,
        "report_event_id": report.event_id,
    }
    return EventType.POC_MILESTONE, payload, "poc-fund", None


# ---------------------------------------------------------------------------- refusals
# Why an external event is not applied: each reason is recorded (nothing after a 2xx is lost).


def listing_refusal(listing: Listing | None, listing_id: str, exchange: str) -> str | None:
    """Why an exchange's event about a listing is not ours to apply, or None."""
    if listing is None:
        return f"listing {listing_id} is not one of this achievement's"
    if listing.exchange != exchange:
        return f"the listing is on {listing.exchange}, not {exchange}"
    return None


def deal_ignored_reason(s: LifecycleState, listing: Listing | None) -> str:
    """Why `deal_ignored` holds: no listing of ours, or not in the transaction stage."""
    if listing is None:
        return "the deal is on no listing of this achievement"
    return f"deals count in the transaction stage, not in {s.stage.value}"


def payment_refusal(s: LifecycleState, payment: Payment, check: PaymentCheck) -> str:
    """Why an instalment is not applied (`payment_check` said so)."""
    if check is PaymentCheck.ALREADY_RECORDED:
        return f"instalment {payment.instalment} is already recorded"
    if s.deal is None:
        return "no deal has been accepted"
    return f"the accepted deal is on listing {s.deal.listing_id}, not {payment.listing_id}"


def expiry_refusal(listing: Listing | None, listing_id: str, exchange: str) -> str | None:
    """Why a listing's expiry changes nothing: not our listing, or it is no longer open."""
    refusal = listing_refusal(listing, listing_id, exchange)
    if refusal is None and listing is not None and listing.status is not ListingStatus.OPEN:
        return f"the listing is already {listing.status.value}"
    return refusal


def incubator_refusal(s: LifecycleState) -> str:
    """Why an incubator event does not count now (`incubator_accepts` is false)."""
    if s.stage is Stage.TRANSACTION:
        return "the transformation modes found no company"
    return f"incubator events count in incubation, not in {s.stage.value}"


def external_event_refusal(s: LifecycleState, event: ExternalEvent) -> str:
    """Why an event that no other signal takes is not applied."""
    if event.system == "poc-fund":
        if s.poc is not None:
            return "the proof of concept is already over"
        if s.stage is Stage.PROOF_OF_CONCEPT:
            return "the proof of concept was not running when the report came"
        return f"no proof of concept is running (stage {s.stage.value})"
    return f"the lifecycle applies no {event.system} event of type {event.type}"
