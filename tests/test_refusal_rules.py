"""Unit tests of why the lifecycle does not apply an external event (workflows/rules.py): each
reason is recorded with the refused event, so it must say what happened. No server."""

from __future__ import annotations

from datetime import UTC, datetime

from test_event_rules import NOW, _deal, _in_transaction, _payment

from schemas.disclosure import TransformationMode
from schemas.incubation import IncubationExit, IncubationMilestone, IncubatorAdmission
from schemas.lifecycle import LifecycleState, Stage
from schemas.refusals import ExternalEvent, held_event_type
from schemas.transaction import Distribution, ListingStatus, RecordedPayment
from workflows import rules


def test_an_event_on_no_listing_of_ours_or_another_exchange_names_why() -> None:
    s = _in_transaction()
    assert (
        rules.listing_refusal(None, "X-9", "sstec")
        == "listing X-9 is not one of this achievement's"
    )
    assert (
        rules.listing_refusal(s.listings[0], "S-1", "jstec") == "the listing is on sstec, not jstec"
    )
    assert rules.listing_refusal(s.listings[0], "S-1", "sstec") is None


def test_an_ignored_deal_says_whether_the_listing_or_the_stage_is_wrong() -> None:
    s = _in_transaction()
    assert rules.deal_ignored_reason(s, None) == "the deal is on no listing of this achievement"
    incubating = s.model_copy(update={"stage": Stage.INCUBATION})
    assert (
        rules.deal_ignored_reason(incubating, s.listings[0])
        == "deals count in the transaction stage, not in incubation"
    )


def test_a_payment_not_applied_names_the_deal_or_the_instalment() -> None:
    no_deal = _in_transaction()
    check = rules.payment_check(no_deal, _payment("S-1", 1))
    assert rules.payment_refusal(no_deal, _payment("S-1", 1), check) == "no deal has been accepted"
    s = _in_transaction(deal=_deal("S-1"))
    other = _payment("J-1", 1)
    assert (
        rules.payment_refusal(s, other, rules.payment_check(s, other))
        == "the accepted deal is on listing S-1, not J-1"
    )
    first = _payment("S-1", 1)
    paid = s.model_copy(
        update={
            "payments": [
                RecordedPayment(
                    payment=first,
                    distribution=Distribution.of(first, s.policy),
                    received_at=NOW,
                )
            ]
        }
    )
    again = first.model_copy(update={"event_id": "pay-1-again"})
    check = rules.payment_check(paid, again)
    assert rules.payment_refusal(paid, again, check) == "instalment 1 is already recorded"


def test_an_expiry_of_a_listing_no_longer_open_or_not_ours_is_refused() -> None:
    s = _in_transaction()
    open_listing = s.listings[0]
    assert rules.expiry_refusal(open_listing, "S-1", "sstec") is None
    dealt = open_listing.model_copy(update={"status": ListingStatus.DEALT})
    assert rules.expiry_refusal(dealt, "S-1", "sstec") == "the listing is already dealt"
    assert (
        rules.expiry_refusal(None, "X-9", "sstec") == "listing X-9 is not one of this achievement's"
    )
    assert (
        rules.expiry_refusal(open_listing, "S-1", "jstec") == "the listing is on sstec, not jstec"
    )


def test_an_incubator_event_out_of_stage_names_the_stage() -> None:
    s = _in_transaction()  # a transfer: no company-founding mode
    assert rules.incubator_refusal(s) == "the transformation modes found no company"
    evaluating = s.model_copy(update={"stage": Stage.EVALUATION})
    assert (
        rules.incubator_refusal(evaluating)
        == "incubator events count in incubation, not in evaluation"
    )


def _state(stage: Stage) -> LifecycleState:
    return _in_transaction(stage=stage, modes=[TransformationMode.LICENCE])


def test_registry_and_fund_events_no_step_takes_are_refused_with_why() -> None:
    notice = ExternalEvent(system="registry", type="registration_amended", event_id="r-1")
    assert (
        rules.external_event_refusal(_state(Stage.EVALUATION), notice)
        == "the lifecycle applies no registry event of type registration_amended"
    )
    report = ExternalEvent(system="poc-fund", type="milestone_reported", event_id="p-1")
    assert (
        rules.external_event_refusal(_state(Stage.EVALUATION), report)
        == "no proof of concept is running (stage evaluation)"
    )
    assert (
        rules.external_event_refusal(_state(Stage.PROOF_OF_CONCEPT), report)
        == "the proof of concept was not running when the report came"
    )


def test_held_incubator_events_keep_the_incubators_type_names() -> None:
    at = datetime(2027, 1, 1, tzinfo=UTC)
    admission = IncubatorAdmission(event_id="a", incubator="Zhangjiang Park", admitted_at=at)
    milestone = IncubationMilestone(
        event_id="m", kind="product", description="first product", reached_at=at
    )
    exit = IncubationExit(event_id="x", kind="graduated", exited_at=at)
    assert [held_event_type(e) for e in (admission, milestone, exit)] == [
        "incubator_admitted",
        "incubation_milestone",
        "incubation_exit",
    ]
    # The state carries them through continue-as-new as JSON: each comes back as itself.
    s = _state(Stage.INCUBATION).model_copy(
        update={"held_incubator_events": [admission, milestone, exit]}
    )
    again = LifecycleState.model_validate_json(s.model_dump_json())
    assert again.held_incubator_events == [admission, milestone, exit]
