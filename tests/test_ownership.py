"""Ownership and the long-term right of use (plan item 3): who the income and the technology
equity belong to, as pure rules. The workflow's use of them is in tests/test_lifecycle_fast.py,
the registry's equity call in tests/test_sandboxes.py, the split's property in
tests/test_distribution.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cli.samples import scenario
from schemas.disclosure import Disclosure, Ownership, OwnershipKind
from schemas.lifecycle import LifecycleState, Stage, StageEntry
from schemas.policy import DEFAULT_POLICY
from schemas.registry_api import RegisterEquityRequest
from schemas.transaction import Distribution, Payment
from workflows import rules

DISCLOSED = datetime(2026, 3, 1, 9, tzinfo=UTC)


def _state(ownership: Ownership) -> LifecycleState:
    sc = scenario(0, "OWN", DISCLOSED.date())
    return LifecycleState(
        achievement_id=sc.disclosure.achievement_id,
        workflow_id="wf",
        disclosure=sc.disclosure.model_copy(update={"ownership": ownership}),
        policy=DEFAULT_POLICY,
        exchanges=sc.exchanges,
        reviewers=sc.reviewers,
        asking_price=sc.asking_price,
        pricing=sc.pricing,
        timeline=[StageEntry(stage=Stage.DISCLOSURE, entered_at=DISCLOSED)],
    )


def _payment(amount: str, paid_at: datetime) -> Payment:
    return Payment(
        event_id="e",
        exchange="sstec",
        listing_id="L",
        instalment=1,
        amount=Decimal(amount),
        paid_at=paid_at,
    )


def _bad(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Ownership.model_validate(data)
    return str(info.value)


def test_ownership_recorded_before_shares_still_loads() -> None:
    for recorded in (
        {"kind": "institution", "years": None},
        {"kind": "researcher_owned", "years": None},
        {"kind": "long_term_use", "years": 10},
    ):
        o = Ownership.model_validate(recorded)
        assert o.institution_share is None and o.granted_on is None
    # A whole recorded disclosure, as the histories hold it.
    sc = scenario(2, "OLD", date(2026, 1, 1))
    dumped = sc.disclosure.model_dump(mode="json")
    dumped["ownership"] = {"kind": "long_term_use", "years": 10}
    assert Disclosure.model_validate(dumped).ownership.years == 10


def test_a_joint_ownership_needs_the_institutions_share_below_one_hundred() -> None:
    assert "institution_share below 100" in _bad({"kind": "joint"})
    assert "institution_share below 100" in _bad({"kind": "joint", "institution_share": "100"})
    joint = Ownership.model_validate({"kind": "joint", "institution_share": "30.00"})
    assert joint.institution_share == Decimal("30.00")


def test_shares_and_grant_dates_apply_only_where_they_mean_something() -> None:
    assert "does not apply to institution" in _bad(
        {"kind": "institution", "institution_share": "30"}
    )
    assert "does not apply to researcher_owned" in _bad(
        {"kind": "researcher_owned", "institution_share": "30"}
    )
    assert "granted_on applies only" in _bad({"kind": "joint", "institution_share": "30",
                                               "granted_on": "2026-01-01"})  # fmt: skip
    assert "years is required" in _bad({"kind": "long_term_use", "institution_share": "20"})


@pytest.mark.parametrize(
    ("ownership", "part"),
    [
        (Ownership(kind=OwnershipKind.INSTITUTION), Decimal(1)),
        (Ownership(kind=OwnershipKind.RESEARCHER_OWNED), Decimal(0)),
        (Ownership(kind=OwnershipKind.JOINT, institution_share=Decimal("30")), Decimal("0.3")),
        # A right of use with no licence share agreed: the owner's income, split as usual.
        (Ownership(kind=OwnershipKind.LONG_TERM_USE, years=10), Decimal(1)),
        (
            Ownership(kind=OwnershipKind.LONG_TERM_USE, years=10, institution_share=Decimal("20")),
            Decimal("0.2"),
        ),
    ],
)
def test_the_institutions_part_follows_ownership(ownership: Ownership, part: Decimal) -> None:
    assert rules.institution_part(_state(ownership), DISCLOSED) == part


def test_a_right_of_use_shares_income_only_while_it_runs() -> None:
    from_disclosure = Ownership(
        kind=OwnershipKind.LONG_TERM_USE, years=10, institution_share=Decimal("20")
    )
    s = _state(from_disclosure)
    assert from_disclosure.right_of_use_ends(DISCLOSED.date()) == date(2036, 3, 1)
    assert rules.institution_part(s, datetime(2036, 2, 29, 23, tzinfo=UTC)) == Decimal("0.2")
    assert rules.institution_part(s, datetime(2036, 3, 1, tzinfo=UTC)) == 1  # lapsed
    granted = from_disclosure.model_copy(update={"granted_on": date(2024, 2, 29)})
    assert granted.right_of_use_ends(DISCLOSED.date()) == date(2034, 2, 28)
    assert rules.institution_part(_state(granted), datetime(2034, 2, 28, tzinfo=UTC)) == 1


def test_a_joint_payment_of_33_33_splits_only_the_institutions_30_percent() -> None:
    s = _state(Ownership(kind=OwnershipKind.JOINT, institution_share=Decimal("30")))
    payment = _payment("33.33", DISCLOSED)
    d = Distribution.of(
        payment, DEFAULT_POLICY, institution_part=rules.institution_part(s, DISCLOSED)
    )
    # The team's 70 % is 23.331, rounded up; of the institution's 9.99 the team's reward is
    # 70 % (6.993, rounded up), the TTO fund 10 % and the institution the rest.
    assert (d.team_owner_income, d.team_reward, d.tto_fund, d.institution) == (
        Decimal("23.34"),
        Decimal("7.00"),
        Decimal("1.00"),
        Decimal("1.99"),
    )


def test_the_equity_registered_for_the_team_follows_ownership() -> None:
    joint = _state(Ownership(kind=OwnershipKind.JOINT, institution_share=Decimal("30")))
    assert rules.equity_shares(joint, Decimal("20.00"), DISCLOSED) == (
        Decimal("6.00"),
        Decimal("14.00"),
    )
    # The team's part rounds up to the hundredth: 33.33 % of 7.77 % is 2.589741 %.
    odd = _state(Ownership(kind=OwnershipKind.JOINT, institution_share=Decimal("66.67")))
    assert rules.equity_shares(odd, Decimal("7.77"), DISCLOSED) == (
        Decimal("5.18"),
        Decimal("2.59"),
    )
    researcher = _state(Ownership(kind=OwnershipKind.RESEARCHER_OWNED))
    assert rules.equity_shares(researcher, Decimal("20.00"), DISCLOSED) == (
        Decimal("0.00"),
        Decimal("20.00"),
    )


def test_the_registry_refuses_a_team_equity_share_above_the_whole() -> None:
    with pytest.raises(ValidationError, match="team_equity_share exceeds equity_share"):
        RegisterEquityRequest(
            achievement_id="ACH-1",
            company_name="Spin-off Co",
            credit_code="91310000MA1FL8XQ3X",
            equity_share=Decimal("20.00"),
            valuation=Decimal("1000000.00"),
            state_owned=True,
            team_equity_share=Decimal("20.01"),
        )


def test_the_disclosed_event_carries_the_ownership_terms() -> None:
    ownership = Ownership(
        kind=OwnershipKind.LONG_TERM_USE,
        years=10,
        institution_share=Decimal("20"),
        granted_on=date(2025, 6, 1),
    )
    payload = rules.disclosed_payload(_state(ownership).disclosure)
    assert payload["ownership"] == "long_term_use"  # as before: what reports count by
    assert payload["ownership_terms"] == {
        "years": 10,
        "institution_share": "20",
        "granted_on": "2025-06-01",
    }


def test_the_teams_equity_reward_is_at_least_the_floor_of_the_institutions_part() -> None:
    institution = _state(Ownership(kind=OwnershipKind.INSTITUTION))
    # 70 % of 7.77 % is 5.439 %: rounded up for the team.
    assert rules.equity_reward(institution, Decimal("7.77"), DISCLOSED) == (
        Decimal("0.00"),
        Decimal("5.44"),
        Decimal("0.70"),
    )
    # Under national law the floor is 50 %; a policy at that rate rewards 50 %, rounded up.
    national = DEFAULT_POLICY.model_copy(
        update={"jurisdiction": "CN", "team_reward_minimum": Decimal("0.50"),
                "team_reward_rate": Decimal("0.50")}
    )  # fmt: skip
    s = institution.model_copy(update={"policy": national})
    assert rules.equity_reward(s, Decimal("7.77"), DISCLOSED).team_reward == Decimal("3.89")
    # A policy above the floor rewards at its own rate.
    generous = DEFAULT_POLICY.model_copy(update={"team_reward_rate": Decimal("0.80")})
    s = institution.model_copy(update={"policy": generous})
    assert rules.equity_reward(s, Decimal("10.00"), DISCLOSED).team_reward == Decimal("8.00")


def test_the_teams_equity_adds_its_reward_to_its_owned_part_and_never_exceeds_the_whole() -> None:
    joint = _state(Ownership(kind=OwnershipKind.JOINT, institution_share=Decimal("30")))
    reward = rules.equity_reward(joint, Decimal("20.00"), DISCLOSED)
    assert (reward.team_owned, reward.team_reward, reward.team) == (
        Decimal("14.00"),
        Decimal("4.20"),
        Decimal("18.20"),
    )
    researcher = _state(Ownership(kind=OwnershipKind.RESEARCHER_OWNED))
    whole = rules.equity_reward(researcher, Decimal("0.01"), DISCLOSED)
    assert whole.team == Decimal("0.01") and whole.team_reward == 0
    for share in ("0.01", "0.03", "33.33", "100"):
        r = rules.equity_reward(
            _state(Ownership(kind=OwnershipKind.INSTITUTION)), Decimal(share), DISCLOSED
        )
        assert r.team <= Decimal(share)
