"""The annual report's brokered deals, team equity and transfer fund parts: as rendered, equal
to plain SQL sums over lifecycle_events and fund_entries; a report recorded before them loads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from report_data import Ledger
from temporalio.testing import ActivityEnvironment

from activities.fund import FundActivities
from activities.report.amounts import yuan
from activities.report_render import to_csv, to_html
from schemas.events import EventType
from schemas.fund import EntryKind, FundEntry
from schemas.policy import DEFAULT_POLICY
from schemas.report import InstitutionAnnualReport
from schemas.transaction import Distribution, Payment

THIS_YEAR = datetime.now(UTC).year
CST = ZoneInfo("Asia/Shanghai")


def _brokerage(code: str, certificate: str, fee: str) -> dict[str, Any]:
    return {
        "transfer_institution": {"code": code, "name": "Synthetic Transfer Co"},
        "technology_manager": {"name": "Li Synthetic", "certificate_number": certificate},
        "service_fee": fee,
    }


def _fund_entry(
    inst: str, n: int, kind: str, amount: str, at: datetime, purpose: str | None
) -> FundEntry:
    use = kind == "use"
    return FundEntry(
        entry_id=f"{kind}/{n}",
        institution=inst,
        kind=EntryKind(kind),
        amount=Decimal(amount),
        balance_after=Decimal("0.00"),  # set in order below
        payment_event_id=None if use else f"pay-{n}",
        purpose=purpose,
        approver="approver:approver" if use else None,
        actor="lifecycle:test",
        occurred_at=at,
        business_at=at,
    )


async def test_brokered_deals_team_equity_and_the_fund_equal_plain_sql_sums(
    db: asyncpg.Pool,
) -> None:
    """The report's brokered deals, fees, team equity and transfer fund, as rendered (CSV and
    HTML), against sums over lifecycle_events and fund_entries by the Shanghai year of the date
    they count on, delivered before the books close: not with the query modules' SQL."""
    y = THIS_YEAR - 2
    ledger = Ledger()
    inst, tti, tm = ledger.inst, f"TTI-{ledger.inst}", f"TM-{ledger.inst}"
    at = datetime(y, 6, 1, 10, tzinfo=CST)
    deals = [  # n, listing, amount, fee, accepted, when accepted
        (1, "L-1", "500000.00", "30000.00", True, at),
        (2, "L-2", "8000.00", "1000.00", True, datetime(y, 12, 31, 23, 30, tzinfo=CST)),
        (3, "L-3", "9000.00", "900.00", True, datetime(y + 1, 1, 1, 0, 30, tzinfo=CST)),
        (4, "L-4", "7000.00", "700.00", False, at),
    ]
    for n, listing, amount, fee, accepted, when in deals:
        payload = {
            "listing_id": listing,
            "accepted": accepted,
            "amount": amount,
            "contract_type": "transfer",
            "brokerage": _brokerage(tti, tm, fee),
        }
        ledger._emit(EventType.DEAL_CLOSED, payload, when, n)
    for n, listing, amount, fee, paid in [
        (1, "L-1", "200000.00", "30000.00", datetime(y, 7, 1, 9, tzinfo=CST)),
        (2, "L-2", "8000.00", "1000.00", datetime(y + 1, 1, 2, 9, tzinfo=CST)),
    ]:
        payment = Payment(
            event_id=f"pay-{inst}-{n}",
            exchange="sstec",
            listing_id=listing,
            instalment=1,
            amount=Decimal(amount),
            costs=Decimal("0.00"),
            paid_at=paid,
        )
        split = Distribution.of(payment, DEFAULT_POLICY, team_rounds_up=True)
        payload = {
            **payment.model_dump(mode="json"),
            "distribution": {**split.model_dump(mode="json"), "service_fee": fee},
        }
        ledger._emit(EventType.PAYMENT_RECEIVED, payload, paid, n)
    equity = {
        "equity_certificate": f"EQ-{inst}",
        "company_name": "Spin-off",
        "valuation": "1000000.00",
        "equity_share": "10.00",
        "team_equity_share": "7.00",
        "team_reward_equity_share": "7.00",
        "team_reward_rate": "0.70",
        "registered_at": at.isoformat(),
    }
    ledger._emit(EventType.EQUITY_REGISTERED, equity, at, 1)
    await ledger.record(db)
    entries = [
        _fund_entry(inst, 1, "accrual", "100.00", datetime(y - 1, 6, 1, tzinfo=CST), None),
        _fund_entry(inst, 2, "accrual", "250.00", datetime(y, 3, 1, tzinfo=CST), None),
        _fund_entry(inst, 3, "accrual", "40.00", datetime(y, 12, 31, 23, 30, tzinfo=CST), None),
        _fund_entry(inst, 4, "use", "30.00", datetime(y, 5, 1, tzinfo=CST), "patent fees"),
        _fund_entry(inst, 5, "use", "20.00", datetime(y, 8, 1, tzinfo=CST), "training"),
        _fund_entry(inst, 6, "use", "10.00", datetime(y, 9, 1, tzinfo=CST), "patent fees"),
        _fund_entry(inst, 7, "accrual", "75.00", datetime(y + 1, 1, 1, 0, 30, tzinfo=CST), None),
    ]
    balance = Decimal("0.00")
    for i, e in enumerate(entries):
        balance += -e.amount if e.kind == EntryKind.USE else e.amount
        entries[i] = e.model_copy(update={"balance_after": balance})
    fund = FundActivities(db)
    assert await ActivityEnvironment().run(fund.record_entries, entries, "CN-SH") == len(entries)

    report = await ledger.report(db, y)
    assert report.brokered is not None and report.fund is not None
    close = "make_timestamptz($2::int + 1, 1, 10, 0, 0, 0, 'Asia/Shanghai')"
    in_year = f"extract(year FROM {{}} AT TIME ZONE 'Asia/Shanghai') = $2 AND occurred_at < {close}"
    broker = await db.fetchrow(
        "SELECT count(*) AS n, sum((payload->>'amount')::numeric) AS amount,"
        " sum((payload#>>'{brokerage,service_fee}')::numeric) AS fee FROM lifecycle_events"
        " WHERE institution_code = $1 AND type = 'deal_closed' AND payload @> $3::jsonb AND "
        + in_year.format("occurred_at"),
        inst,
        y,
        {"accepted": True, "brokerage": {"transfer_institution": {"code": tti}}},
    )
    fees_paid = await db.fetchval(
        "SELECT sum((payload#>>'{distribution,service_fee}')::numeric) FROM lifecycle_events"
        " WHERE institution_code = $1 AND type = 'payment_received' AND "
        + in_year.format("(payload->>'paid_at')::timestamptz"),
        inst,
        y,
    )
    assert broker is not None and (broker["n"], fees_paid) == (2, Decimal("30000.00"))
    # The income part shows the fees taken before the split (these hand-made events do not
    # split, so only the fees are compared; tests/test_brokered_deals.py checks real splits).
    assert report.income.service_fees == fees_paid
    expected = (broker["n"], broker["amount"], broker["fee"], fees_paid)
    [institution] = report.brokered.transfer_institutions
    [manager] = report.brokered.technology_managers
    for b, key, name in (
        (institution, tti, "Synthetic Transfer Co"),
        (manager, tm, "Li Synthetic"),
    ):
        assert (b.id, b.name) == (key, name)
        assert (b.deals, b.amount, b.fees_agreed, b.fees_paid) == expected
    [reward] = report.brokered.team_equity
    team_share = await db.fetchval(
        "SELECT sum((payload->>'team_equity_share')::numeric) FROM lifecycle_events"
        " WHERE institution_code = $1 AND type = 'equity_registered' AND "
        + in_year.format("occurred_at"),
        inst,
        y,
    )
    assert (reward.achievement_id, reward.team_equity_share) == (f"{inst}-001", team_share)

    sums = {
        (r["year"], r["kind"]): (r["n"], r["amount"])
        for r in await db.fetch(
            "SELECT extract(year FROM business_at AT TIME ZONE 'Asia/Shanghai')::int AS year,"
            " kind, count(*) AS n, sum(amount) AS amount FROM fund_entries"
            " WHERE institution_code = $1 GROUP BY 1, 2",
            inst,
        )
    }
    opening = await db.fetchval(
        "SELECT sum(CASE kind WHEN 'accrual' THEN amount ELSE -amount END) FROM fund_entries"
        " WHERE institution_code = $1"
        " AND extract(year FROM business_at AT TIME ZONE 'Asia/Shanghai') < $2",
        inst,
        y,
    )
    f = report.fund
    assert (f.accruals, f.accrued) == sums[(y, "accrual")] == (2, Decimal("290.00"))
    assert (f.uses, f.used) == sums[(y, "use")] == (3, Decimal("60.00"))
    assert f.opening_balance == opening == Decimal("100.00")
    assert f.closing_balance == opening + sums[(y, "accrual")][1] - sums[(y, "use")][1]
    purposes = {
        r["purpose"]: (r["n"], r["amount"])
        for r in await db.fetch(
            "SELECT purpose, count(*) AS n, sum(amount) AS amount FROM fund_entries"
            " WHERE institution_code = $1 AND kind = 'use'"
            " AND extract(year FROM business_at AT TIME ZONE 'Asia/Shanghai') = $2 GROUP BY 1",
            inst,
            y,
        )
    }
    assert {u.purpose: (u.uses, u.amount) for u in f.by_purpose} == purposes

    # As rendered: the CSV rows and the HTML carry the same figures.
    rows = {(r["part"], r["item"]): r for r in csv.DictReader(io.StringIO(to_csv([report])))}
    row = rows[("transfer_institution", f"{tti}:deals")]
    assert (int(row["count"]), Decimal(row["amount"])) == (broker["n"], broker["amount"])
    assert Decimal(rows[("technology_manager", f"{tm}:fees_paid")]["amount"]) == fees_paid
    assert Decimal(rows[("fund", "closing_balance")]["amount"]) == f.closing_balance
    assert Decimal(rows[("fund", "purpose:patent fees")]["amount"]) == purposes["patent fees"][1]
    zh, en = to_html([report], y), to_html([report], y, "en")
    for part in ('data-part="brokered"', 'data-part="fund"'):
        assert part in zh and part in en
    assert "技术转移机构" in zh and "技术经理人" in zh and "技术转移专项资金" in zh
    assert "团队股权奖励" in zh and "Technology managers" in en and "Closing balance" in en
    for figure in (broker["amount"], broker["fee"], fees_paid, f.closing_balance, f.used):
        assert yuan(figure) in zh
    assert "Technology managers" not in zh and "技术经理人" not in en


def test_a_report_recorded_before_the_new_parts_still_loads_and_renders() -> None:
    """An activity result in a recorded history, without brokered deals or the fund."""
    report = InstitutionAnnualReport.model_validate(
        {
            "institution_code": "OLD",
            "year": THIS_YEAR - 3,
            "generated_at": datetime.now(UTC).isoformat(),
            "events_in_year": 0,
            "achievements": {"disclosed": 0, "by_field": {}, "by_funding_kind": {}},
            "deals": {"transfers": {}, "licences": {}, "equity_investments": {}},
            "contracts": {"by_type": {}, "total": {}, "verified_total": "0.00"},
            "income": {
                "payments": 0,
                **dict.fromkeys(
                    ("cash_received", "costs", "net_income", "team_reward", "tto_fund"), "0"
                ),
                "institution": "0",
                "by_month": ["0"] * 12,
            },
            "rewards": {"rewards_paid": "0", "teams_rewarded": 0, "people_rewarded": None},
            "companies": {
                "companies_created": 0,
                "equity_registered": 0,
                "state_owned_equity": 0,
                "equity_held": "0",
            },
            "funnel": {},
        }
    )
    assert report.brokered is None and report.fund is None
    html = to_html([report], report.year)
    assert 'data-part="brokered"' in html and 'data-part="fund"' in html
    assert not [r for r in csv.DictReader(io.StringIO(to_csv([report]))) if r["part"] == "fund"]
