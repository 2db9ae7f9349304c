"""The research team's statutory floor: from the jurisdiction, never lowered by a policy, never
bent by rounding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.policy_book import PolicyBook, PolicyFileError
from schemas.jurisdiction import JURISDICTIONS
from schemas.money import CENT, to_cents
from schemas.policy import DEFAULT_POLICY, Policy
from schemas.transaction import Distribution, Payment

MAX_CENTS = 9_999_999_999_999_999  # Money: 16 digits


def _payment(amount: Decimal, costs: Decimal = Decimal("0.00")) -> Payment:
    return Payment(
        event_id="e",
        exchange="sstec",
        listing_id="L",
        instalment=1,
        amount=amount,
        costs=costs,
        paid_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _policy(**rates: str) -> Policy:
    return Policy(institution_code="X", version="p", **{k: Decimal(v) for k, v in rates.items()})


@st.composite
def payments_and_policies(draw: st.DrawFn) -> tuple[Payment, Policy]:
    amount = draw(st.integers(1, MAX_CENTS))
    costs = draw(st.integers(0, amount))
    code = draw(st.sampled_from(sorted(JURISDICTIONS)))
    floor = JURISDICTIONS[code].team_reward_floor
    rate = draw(st.decimals(min_value=floor, max_value=Decimal(1), places=4))
    tto = draw(st.decimals(min_value=Decimal(0), max_value=1 - rate, places=4))
    policy = Policy(
        institution_code="X",
        version="p",
        jurisdiction=code,
        team_reward_rate=rate,
        tto_fund_rate=tto,
    )
    return _payment(Decimal(amount) * CENT, Decimal(costs) * CENT), policy


@given(payments_and_policies())
def test_the_team_never_gets_less_than_its_rate_and_the_parts_sum_to_the_net(
    case: tuple[Payment, Policy],
) -> None:
    payment, policy = case
    d = Distribution.of(payment, policy)
    net = payment.amount - payment.costs
    owed = net * policy.team_reward_rate  # exact: Decimal, no tolerance
    assert d.net_income == net
    assert d.team_reward + d.tto_fund + d.institution == net
    assert owed <= d.team_reward < owed + CENT
    assert d.team_reward >= net * policy.statute.team_reward_floor
    assert d.tto_fund >= 0 and d.institution >= 0
    # The TTO fund gives up a cent only when the rates leave the institution nothing to give.
    assert d.tto_fund == to_cents(net * policy.tto_fund_rate) or d.institution == 0
    for part in (d.team_reward, d.tto_fund, d.institution):
        assert part == part.quantize(CENT)


# The institution's part of an achievement (plan item 3): its own (1), researcher-owned (0), a
# joint ownership or a licence share under a right of use (0.0001 to 0.9999, from per cent).
institution_parts = st.one_of(
    st.sampled_from([Decimal(1), Decimal(0)]),
    st.integers(1, 9_999).map(lambda hundredths: Decimal(hundredths) / 10_000),
)


@given(payments_and_policies(), institution_parts)
def test_ownership_gives_the_team_its_own_part_whole_and_the_floor_of_the_rest(
    case: tuple[Payment, Policy], part: Decimal
) -> None:
    payment, policy = case
    d = Distribution.of(payment, policy, institution_part=part)
    net = payment.amount - payment.costs
    shared = net - d.team_owner_income  # the institution's part, split by its policy
    assert d.team_owner_income + d.team_reward + d.tto_fund + d.institution == net
    # The team's own part rounds up in its favour, by less than a cent.
    assert net * (1 - part) <= d.team_owner_income < net * (1 - part) + CENT
    assert shared >= 0 and d.institution_part == part
    owed = shared * policy.team_reward_rate
    assert owed <= d.team_reward < owed + CENT
    assert d.team_reward >= shared * policy.statute.team_reward_floor
    assert d.tto_fund >= 0 and d.institution >= 0
    for value in (d.team_owner_income, d.team_reward, d.tto_fund, d.institution):
        assert value == value.quantize(CENT)
    if part == 1:  # an institution-owned achievement is split exactly as before ownership
        assert d == Distribution.of(payment, policy)


def test_an_instalment_of_33_33_pays_the_team_23_34() -> None:
    d = Distribution.of(_payment(Decimal("33.33")), DEFAULT_POLICY)  # 70 / 10 / 20
    assert (d.team_reward, d.tto_fund, d.institution) == (
        Decimal("23.34"),
        Decimal("3.33"),
        Decimal("6.66"),
    )


def test_the_former_half_up_rounding_is_kept_for_replay() -> None:
    d = Distribution.of(_payment(Decimal("33.33")), DEFAULT_POLICY, team_rounds_up=False)
    assert (d.team_reward, d.tto_fund, d.institution) == (
        Decimal("23.33"),
        Decimal("3.33"),
        Decimal("6.67"),
    )


def test_when_the_rates_take_the_whole_net_the_tto_fund_gives_the_cent() -> None:
    d = Distribution.of(
        _payment(Decimal("0.05")), _policy(team_reward_rate="0.7", tto_fund_rate="0.3")
    )
    assert (d.team_reward, d.tto_fund, d.institution) == (
        Decimal("0.04"),
        Decimal("0.01"),
        Decimal("0.00"),
    )


@pytest.mark.parametrize("field", ["team_reward_rate", "team_reward_minimum"])
def test_a_policy_lowering_the_shanghai_floor_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        _policy(**{field: "0.6999"})
    [error] = info.value.errors()
    assert error["loc"] == (field,)
    assert field in error["msg"] and "0.70" in error["msg"] and "CN-SH" in error["msg"]


def test_the_national_jurisdiction_allows_half_but_not_less() -> None:
    national = Policy(
        institution_code="X", version="p", jurisdiction="CN", team_reward_rate=Decimal("0.50")
    )
    assert national.team_reward_minimum == Decimal("0.50")  # defaults to the floor
    assert national.statute.team_reward_floor == Decimal("0.50")
    with pytest.raises(ValidationError) as info:
        Policy(
            institution_code="X", version="p", jurisdiction="CN", team_reward_rate=Decimal("0.49")
        )
    assert [e["loc"] for e in info.value.errors()] == [("team_reward_rate",)]
    assert "0.50" in str(info.value) and "jurisdiction CN " in str(info.value)


def test_an_institution_may_raise_its_own_minimum_above_the_floor() -> None:
    policy = Policy(
        institution_code="X",
        version="p",
        jurisdiction="CN",
        team_reward_minimum=Decimal("0.60"),
        team_reward_rate=Decimal("0.60"),
    )
    assert policy.team_reward_minimum == Decimal("0.60")
    with pytest.raises(ValidationError, match="below the institution's team_reward_minimum"):
        policy.model_validate({**policy.model_dump(), "team_reward_rate": Decimal("0.55")})


def test_an_unknown_jurisdiction_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        Policy(institution_code="X", version="p", jurisdiction="US")
    assert [e["loc"] for e in info.value.errors()] == [("jurisdiction",)]


def test_every_jurisdiction_is_well_formed() -> None:
    for code, j in JURISDICTIONS.items():
        assert j.code == code and 0 < j.team_reward_floor <= 1
        assert ZoneInfo(j.time_zone).key == "Asia/Shanghai"


def test_policies_recorded_before_jurisdictions_still_load() -> None:
    recorded = DEFAULT_POLICY.model_dump(mode="json")
    del recorded["jurisdiction"]  # histories hold team_reward_minimum, not jurisdiction
    assert Policy.model_validate(recorded) == DEFAULT_POLICY
    assert DEFAULT_POLICY.jurisdiction == "CN-SH"


def _write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def test_a_policy_file_below_the_floor_fails_once_naming_file_entry_and_field(
    tmp_path: Path,
) -> None:
    good = {"institution_code": "FDU", "version": "fdu.1", "team_reward_rate": "0.75"}
    bad = {"institution_code": "FDU", "version": "fdu.2", "team_reward_minimum": "0.60"}
    path = _write(tmp_path, [good, bad])
    with pytest.raises(PolicyFileError) as info:
        PolicyBook.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"policy file {path}: entry 1 (FDU/fdu.2): team_reward_minimum ")
    assert "statutory floor 0.70 of jurisdiction CN-SH" in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [("[{", "not JSON"), ('{"version": "1"}', "must be a JSON list"), ("[1]", "entry 0: ")],
)
def test_a_malformed_policy_file_is_one_clear_line(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "policies.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PolicyFileError, match=reason) as info:
        PolicyBook.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_lawful_policy_file_is_used(tmp_path: Path) -> None:
    entry = {"institution_code": "FDU", "version": "fdu.1", "jurisdiction": "CN"}
    book = PolicyBook.load(_write(tmp_path, [{**entry, "team_reward_rate": "0.55"}]))
    assert book.current("FDU").team_reward_rate == Decimal("0.55")
    assert book.current("SJTU") is DEFAULT_POLICY


def test_the_stack_refuses_a_policy_that_lowers_the_floor_once_by_name(tmp_path: Path) -> None:
    """`achievements dev` stops before starting anything, with one line naming file, entry
    and field (not a traceback per request in a log)."""
    import os
    import socket
    import subprocess
    import sys

    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            [{"institution_code": "FDU", "version": "fdu.2", "team_reward_minimum": "0.60"}]
        ),
        encoding="utf-8",
    )
    ports = []
    for _ in range(7):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(str(probe.getsockname()[1]))
    options = ["--temporal-port", "--ui-port", "--gateway-port", "--registry-port"]
    options += ["--exchange-port", "--metrics-port", "--issuer-port"]
    argv = [sys.executable, "-m", "cli.main", "dev", "--data-dir", str(tmp_path / "data")]
    argv += [x for pair in zip(options, ports, strict=True) for x in pair]
    env = {**os.environ, "ACHIEVEMENTS_POLICY_FILE": str(policy), "COLUMNS": "200"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert str(policy) in out and "entry" in out and "team_reward_minimum" in out
    assert "Traceback" not in out
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


# ---------------------------------------------------------------------------- brokers' fees


@given(payments_and_policies(), st.integers(0, MAX_CENTS))
def test_a_service_fee_never_makes_net_income_negative(
    case: tuple[Payment, Policy], fee_cents: int
) -> None:
    payment, policy = case
    fee_due = Decimal(fee_cents) * CENT
    d = Distribution.of(payment, policy, fee_due=fee_due)
    income = payment.amount - payment.costs
    assert d.service_fee == min(fee_due, income)  # as much of the fee as the income covers
    assert d.net_income == income - d.service_fee >= 0
    assert d.team_reward >= d.net_income * policy.team_reward_rate  # still rounded up
    assert d.team_reward + d.tto_fund + d.institution + d.team_owner_income == d.net_income


def test_a_fee_is_taken_from_the_first_instalments_until_covered() -> None:
    fee_due = Decimal("450000.01")
    taken = []
    for amount in ("300000.00", "300000.00", "400000.00"):
        d = Distribution.of(_payment(Decimal(amount)), DEFAULT_POLICY, fee_due=fee_due)
        fee_due -= d.service_fee
        taken.append((d.service_fee, d.net_income))
    assert taken == [
        (Decimal("300000.00"), Decimal("0.00")),
        (Decimal("150000.01"), Decimal("149999.99")),
        (Decimal("0.00"), Decimal("400000.00")),
    ]


def test_distributions_recorded_before_fees_still_load() -> None:
    recorded = Distribution.of(_payment(Decimal("10.00")), DEFAULT_POLICY).model_dump(mode="json")
    del recorded["service_fee"]
    assert Distribution.model_validate(recorded).service_fee == Decimal("0.00")


def test_every_jurisdiction_has_an_equity_floor_of_its_law() -> None:
    assert JURISDICTIONS["CN-SH"].team_equity_floor == Decimal("0.70")
    assert JURISDICTIONS["CN"].team_equity_floor == Decimal("0.50")
