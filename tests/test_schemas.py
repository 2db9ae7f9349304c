"""Unit tests of the models: validation names the field, money is exact to the cent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cli.samples import scenario
from core.policy_book import DEMO_POLICY, PolicyBook
from schemas.disclosure import Disclosure
from schemas.policy import DEFAULT_POLICY, Policy
from schemas.transaction import Distribution, Payment


def _valid() -> dict[str, Any]:
    return scenario(0, "UNIT", date(2026, 1, 1)).disclosure.model_dump(mode="json")


def _bad_fields(data: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as info:
        Disclosure.model_validate(data)
    return {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


def test_sample_disclosure_is_valid() -> None:
    assert Disclosure.model_validate(_valid()).municipal_deadline == date(2028, 12, 31)  # 3 x 365 d


def test_every_bad_field_is_named() -> None:
    data = _valid()
    data["inventors"] = [{"name": "Li", "share": "60"}, {"name": "Wang", "share": "30"}]
    data["trl"] = 12
    data["funding"] = [{"kind": "municipal_finance", "project_code": "SH-1"}]
    data["ownership"] = {"kind": "long_term_use"}
    data["intended_modes"] = ["transfer", "transfer"]
    assert _bad_fields(data) == {"inventors", "trl", "funding.0", "ownership", "intended_modes"}


def test_shares_must_sum_exactly_to_one_hundred() -> None:
    data = _valid()
    data["inventors"] = [{"name": "A", "share": "33.33"}, {"name": "B", "share": "66.66"}]
    assert _bad_fields(data) == {"inventors"}
    data["inventors"] = [{"name": "A", "share": "33.34"}, {"name": "B", "share": "66.66"}]
    assert Disclosure.model_validate(data).inventors[0].share == Decimal("33.34")


def test_policy_refuses_a_team_reward_below_the_statutory_minimum() -> None:
    with pytest.raises(ValidationError, match=r"team_reward_rate 0\.5 is below the statutory"):
        Policy(institution_code="X", version="1", team_reward_rate=Decimal("0.5"))
    with pytest.raises(ValidationError, match="exceed the whole"):
        Policy(
            institution_code="X",
            version="1",
            team_reward_rate=Decimal("0.95"),
            tto_fund_rate=Decimal("0.10"),
        )


def test_policy_book_picks_the_newest_version_for_the_institution() -> None:
    newer = DEFAULT_POLICY.model_copy(update={"institution_code": "FDU", "version": "fdu.2"})
    older = newer.model_copy(update={"version": "fdu.1"})
    book = PolicyBook([DEFAULT_POLICY, DEMO_POLICY, older, newer])
    assert book.current("FDU").version == "fdu.2"
    assert book.current("SJTU") is DEFAULT_POLICY
    assert book.current("SYN-UNIV-A") is DEMO_POLICY


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999999.99"), places=2)
rates = st.decimals(min_value=Decimal("0.70"), max_value=Decimal("0.95"), places=4)


@given(
    amount=amounts,
    costs_share=st.integers(0, 100),
    team=rates,
    tto=st.decimals(min_value=Decimal("0"), max_value=Decimal("0.05"), places=4),
)
def test_distribution_parts_sum_to_the_net_income_to_the_cent(
    amount: Decimal, costs_share: int, team: Decimal, tto: Decimal
) -> None:
    policy = Policy(
        institution_code="X",
        version="p",
        team_reward_minimum=Decimal("0.70"),
        team_reward_rate=team,
        tto_fund_rate=tto,
    )
    costs = (amount * costs_share / 100).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    payment = Payment(
        event_id="e",
        exchange="sstec",
        listing_id="L",
        instalment=1,
        amount=amount,
        costs=costs,
        paid_at=datetime.now(UTC),
    )
    d = Distribution.of(payment, policy)
    assert d.team_reward + d.tto_fund + d.institution == d.net_income == amount - costs
    for part in (d.team_reward, d.tto_fund, d.institution):
        assert part == part.quantize(Decimal("0.01")) and part >= 0
    # The team never gets less than the statutory share (tests/test_distribution.py for more).
    assert d.team_reward >= d.net_income * policy.team_reward_minimum


def test_money_refuses_fractions_of_a_cent() -> None:
    with pytest.raises(ValidationError) as info:
        Payment(
            event_id="e",
            exchange="sstec",
            listing_id="L",
            instalment=1,
            amount=Decimal("10.001"),
            paid_at=datetime.now(UTC) - timedelta(days=1),
        )
    assert [e["loc"] for e in info.value.errors()] == [("amount",)]
