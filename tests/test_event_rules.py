"""Unit tests of the decisions the lifecycle takes on external events (workflows/rules.py):
which deal wins, which payment applies, when the incubator is heard. Milliseconds, no server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from cli.samples import scenario
from schemas.disclosure import TransformationMode
from schemas.evaluation import Recommendation
from schemas.lifecycle import LifecycleState, Stage
from schemas.policy import DEFAULT_POLICY
from schemas.proof_of_concept import PocMilestone, PocMilestoneReport, PocProgress, PocProgressKind
from schemas.transaction import (
    ContractType,
    Deal,
    Distribution,
    Listing,
    ListingStatus,
    Payment,
    PricingMethod,
    RecordedPayment,
)
from workflows import rules

NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


def _listing(exchange: str, listing_id: str, publicity_ends: datetime) -> Listing:
    return Listing(
        exchange=exchange,
        listing_id=listing_id,
        status=ListingStatus.OPEN,
        asking_price=Decimal("1000.00"),
        pricing=PricingMethod.AGREEMENT,
        listed_at=publicity_ends - timedelta(days=15),
        publicity_ends_at=publicity_ends,
    )


def _deal(listing_id: str, exchange: str = "sstec") -> Deal:
    return Deal(
        event_id=f"deal-{listing_id}",
        exchange=exchange,
        listing_id=listing_id,
        buyer="Buyer Ltd",
        contract_type=ContractType.TRANSFER,
        amount=Decimal("1000.00"),
        instalments=2,
        closed_at=NOW,
    )


def _payment(listing_id: str, n: int) -> Payment:
    return Payment(
        event_id=f"pay-{n}",
        exchange="sstec",
        listing_id=listing_id,
        instalment=n,
        amount=Decimal("500.00"),
        paid_at=NOW,
    )


def _in_transaction(**changes: object) -> LifecycleState:
    sc = scenario(0, "EVENTS", date(2027, 1, 1))
    state = LifecycleState(
        achievement_id=sc.disclosure.achievement_id,
        workflow_id="wf",
        disclosure=sc.disclosure,
        policy=DEFAULT_POLICY,
        exchanges=["sstec", "jstec"],
        reviewers=sc.reviewers,
        asking_price=sc.asking_price,
        pricing=sc.pricing,
        stage=Stage.TRANSACTION,
        listings=[
            _listing("sstec", "S-1", NOW - timedelta(days=1)),
            _listing("jstec", "J-1", NOW + timedelta(days=1)),
        ],
    )
    return state.model_copy(update=changes)


def test_a_listing_is_ours_only_by_its_id() -> None:
    s = _in_transaction()
    assert rules.listing_of(s, "S-1") == s.listings[0]
    assert rules.listing_of(s, "X-9") is None


def test_an_exchange_speaks_only_for_its_own_listings() -> None:
    s = _in_transaction()
    assert not rules.on_another_exchange(s.listings[0], "sstec")
    assert rules.on_another_exchange(s.listings[0], "jstec")
    assert not rules.on_another_exchange(None, "jstec")  # not ours at all: ignored elsewhere


def test_deals_outside_transaction_or_on_no_listing_of_ours_are_ignored() -> None:
    s = _in_transaction()
    assert rules.deal_ignored(s, None)
    assert rules.deal_ignored(s.model_copy(update={"stage": Stage.INCUBATION}), s.listings[0])
    assert not rules.deal_ignored(s, s.listings[0])


def test_the_first_deal_after_publicity_wins() -> None:
    s = _in_transaction()
    assert rules.deal_refusal(s, s.listings[0], NOW) is None
    assert rules.deal_refusal(s, s.listings[1], NOW) == "publicity period not over"
    won = s.model_copy(update={"deal": _deal("S-1")})
    assert rules.deal_refusal(won, s.listings[0], NOW) == "another deal closed first"
    # Publicity ends at an instant: a deal at that instant is on time.
    assert rules.deal_refusal(s, s.listings[1], s.listings[1].publicity_ends_at) is None


def test_payments_apply_to_the_winning_deal_once_per_instalment() -> None:
    deal = _deal("S-1")
    s = _in_transaction(deal=deal)
    assert rules.payment_check(_in_transaction(), _payment("S-1", 1)).value == "no such deal"
    assert rules.payment_check(s, _payment("J-1", 1)) is rules.PaymentCheck.NO_SUCH_DEAL
    assert rules.payment_check(s, _payment("S-1", 1)) is rules.PaymentCheck.APPLY
    first = _payment("S-1", 1)
    paid = s.model_copy(
        update={
            "payments": [
                RecordedPayment(
                    payment=first,
                    distribution=Distribution.of(first, DEFAULT_POLICY),
                    received_at=NOW,
                )
            ]
        }
    )
    assert rules.payment_check(paid, _payment("S-1", 1)) is rules.PaymentCheck.ALREADY_RECORDED
    assert rules.payment_check(paid, _payment("S-1", 2)) is rules.PaymentCheck.APPLY


@pytest.mark.parametrize(
    ("stage", "modes", "heard"),
    [
        (Stage.INCUBATION, [TransformationMode.TRANSFER], True),
        (Stage.TRANSACTION, [TransformationMode.EQUITY_INVESTMENT], True),
        (Stage.TRANSACTION, [TransformationMode.SELF_IMPLEMENTATION], True),
        (Stage.TRANSACTION, [TransformationMode.LICENCE], False),
        (Stage.EVALUATION, [TransformationMode.EQUITY_INVESTMENT], False),
        (Stage.REPORTING, [TransformationMode.EQUITY_INVESTMENT], False),
    ],
)
def test_the_incubator_is_heard_once_a_company_is_on_the_way(
    stage: Stage, modes: list[TransformationMode], heard: bool
) -> None:
    assert rules.incubator_accepts(_in_transaction(stage=stage, modes=modes)) is heard


def _progress(kind: PocProgressKind, at: datetime, report: bool = False) -> PocProgress:
    milestone = PocMilestone(milestone_id="m1", title="Prototype", due=NOW.date(), due_at=NOW)
    return PocProgress(
        event_id=f"poc/{kind.value}",
        kind=kind,
        occurred_at=at,
        application_number="POC-1",
        granted_amount=Decimal("500000.00"),
        milestone=milestone,
        report=PocMilestoneReport(
            event_id="fund-1", milestone_id="m1", achieved=True, reported_at=at
        )
        if report
        else None,
    )


def test_poc_progress_becomes_one_event_each_late_reports_say_so() -> None:
    late = _progress(PocProgressKind.MILESTONE_REPORTED, NOW + timedelta(hours=1), report=True)
    type, payload, source, key = rules.poc_progress_event(late)
    assert (type.value, source, key) == ("poc_milestone", "poc-fund", None)
    assert payload["on_time"] is False and payload["due"] == NOW.isoformat()
    type, payload, _, key = rules.poc_progress_event(_progress(PocProgressKind.FUNDED, NOW))
    assert (type.value, key, payload["granted_amount"]) == ("poc_funded", "funded", "500000.00")
    type, payload, _, key = rules.poc_progress_event(
        _progress(PocProgressKind.MILESTONE_OVERDUE, NOW)
    )
    assert (type.value, key, payload["milestone_id"]) == (
        "poc_milestone_overdue",
        "overdue/m1",
        "m1",
    )


def test_the_mean_score_reads_to_two_places() -> None:
    assert rules.two_places(Decimal("8.75") / 3) == Decimal("2.92")
    assert str(rules.two_places(Decimal("3"))) == "3.00"


def test_an_abandon_is_answered_with_the_route_taken() -> None:
    municipal = _in_transaction()  # scenario 0: municipal finance
    national = municipal.model_copy(
        update={"disclosure": scenario(1, "EVENTS", date(2027, 1, 1)).disclosure}
    )
    assert rules.operator_route_answer(municipal, Recommendation.ABANDON) == (
        "resource (abandon overridden: municipal finance)"
    )
    assert rules.operator_route_answer(national, Recommendation.ABANDON) == "abandon"
    assert rules.operator_route_answer(municipal, Recommendation.TRANSACTION) == "transaction"


def test_a_reminder_counts_the_missing_reviews_with_or_without_a_panel() -> None:
    panel = _in_transaction()
    assert rules.missing_reviews(panel) == {"missing": panel.reviewers, "missing_reviews": 3}
    assert rules.missing_reviews(panel.model_copy(update={"reviewers": []})) == {
        "missing": [],
        "missing_reviews": 3,
    }


def _closed(s: LifecycleState, status: ListingStatus = ListingStatus.EXPIRED) -> LifecycleState:
    return s.model_copy(
        update={"listings": [x.model_copy(update={"status": status}) for x in s.listings]}
    )


def test_listings_lapse_when_every_current_listing_closed_without_a_deal() -> None:
    s = _in_transaction()
    assert not rules.listings_lapsed(s)
    one_open = s.model_copy(update={"listings": [_closed(s).listings[0], s.listings[1]]})
    assert not rules.listings_lapsed(one_open)
    assert rules.listings_lapsed(_closed(s))
    assert not rules.listings_lapsed(_closed(s).model_copy(update={"deal": _deal("S-1")}))
    # A new round without listings yet has nothing to lapse; its listings are the current ones.
    assert not rules.listings_lapsed(_closed(s).model_copy(update={"listing_round": 1}))
    relisted = _closed(s).model_copy(
        update={
            "listing_round": 1,
            "listings": [
                *_closed(s).listings,
                s.listings[0].model_copy(update={"listing_round": 1}),
            ],
        }
    )
    assert rules.current_listings(relisted) == [relisted.listings[-1]]
    assert not rules.listings_lapsed(relisted)


def test_the_mandatory_clock_stays_armed_while_no_listing_is_open() -> None:
    s = _in_transaction()  # municipal money: its deadline is the scenario's
    assert s.disclosure.municipal_deadline is not None
    assert rules.mandatory_due_at(s) is None  # on the market
    lapsed = _closed(s).model_copy(update={"listings_lapsed_at": NOW})
    due = rules.mandatory_due_at(lapsed)
    assert due is not None and due.date() == s.disclosure.municipal_deadline
    # Disarmed again by a deal, a contract's way there, or the mandatory listing itself.
    assert rules.mandatory_due_at(lapsed.model_copy(update={"deal": _deal("S-1")})) is None
    triggered = lapsed.model_copy(update={"mandatory_listing_triggered": True})
    assert rules.mandatory_due_at(triggered) is None
    held = _closed(s).model_copy(update={"stage": Stage.RESOURCE, "listing_round": 1})
    assert rules.mandatory_due_at(held) is not None
