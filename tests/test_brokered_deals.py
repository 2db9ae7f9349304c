"""Brokered deals and the team's equity (plan items 2, 3, 6 and 7) on real parts.

A real worker on the dev server, the registry and exchange sandboxes over loopback HTTP, the
gateway receiving the exchange's signed webhooks, and the embedded PostgreSQL. The buyer acts
through the exchange sandbox's test-mode triggers; the incubator is played by signalling the
workflow directly (its webhook is tested in tests/test_gateway.py). Every figure of the
report's query module is checked against an independent SQL sum over the events.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from helpers import scenarios
from helpers.lifecycle import record_history, start, to_transaction, until
from helpers.replay import assert_replays
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.report.amounts import yuan
from activities.report.rows import report_rows
from activities.report_deals import build_deals_and_equity
from activities.report_render import to_html
from activities.reports import build_institution_report
from core.policy_book import DEMO_POLICY
from gateway.signing import sign
from schemas.commands import Withdrawal
from schemas.exchange_api import SimulatedDeal, SimulatedPayment
from schemas.incubation import CompanyFounded
from schemas.jurisdiction import SHANGHAI
from schemas.lifecycle import Stage
from schemas.money import CENT
from schemas.transaction import Brokerage, Listing, TechnologyManager, TransferInstitution
from workers.worker import build_worker
from workflows import patches
from workflows.lifecycle import AchievementLifecycle

if TYPE_CHECKING:
    from conftest import Stack

# Short publicity, so a deal can close on the dev server's real clock.
POLICY = DEMO_POLICY.model_copy(update={"publicity_period": timedelta(seconds=2)})


def _brokerage(tag: str, fee: str) -> Brokerage:
    return Brokerage(
        technology_manager=TechnologyManager(name="Li Synthetic", certificate_number=f"TM-{tag}"),
        transfer_institution=TransferInstitution(code=f"TTI-{tag}", name="Synthetic Transfer Co"),
        service_fee=Decimal(fee),
    )


async def _trigger(
    http: httpx.AsyncClient, stack: Stack, x: Listing, what: str, body: dict[str, Any]
) -> httpx.Response:
    """A buyer's action on the exchange sandbox (its test-mode trigger)."""
    return await http.post(
        f"{stack.settings.exchange_url}/sandbox/exchanges/{x.exchange}/listings/"
        f"{x.listing_id}/{what}",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def _fields(response: httpx.Response) -> set[str]:
    return {e["field"] for e in response.json()["detail"]}


async def _events(db: asyncpg.Pool, aid: str, type: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT payload FROM lifecycle_events WHERE achievement_id = $1 AND type = $2 ORDER BY seq",
        aid,
        type,
    )
    return [dict(r["payload"]) for r in rows]


async def test_a_brokers_fee_is_taken_from_the_first_payments_and_the_team_gets_equity(
    dev_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool, task_queue: str
) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    sc = scenarios.transfer_then_company(datetime.now(UTC).date())
    aid = sc.disclosure.achievement_id
    today = datetime.now(UTC).date()
    assert sc.disclosure.ownership.institution_part(today, today) == 1  # the team owns none
    brokerage = _brokerage(tag, "450000.01")
    deal = SimulatedDeal(
        buyer="Synthetic Buyer Ltd",
        contract_type=sc.contract_type,
        amount=Decimal("1000000.00"),
        instalments=3,
        brokerage=brokerage,
    )
    # Instalment 1 pays only fee and costs (net 0, never below); 2 pays the fee's last
    # 160000.01, so its net has an odd cent; 3 pays no fee.
    payments = [("300000.00", "10000.00"), ("300000.00", "0.00"), ("400000.00", "0.00")]
    worker = build_worker(dev_env.client, stack.deps, task_queue, stack.settings)
    async with worker, httpx.AsyncClient(timeout=30.0) as http:
        handle = await start(dev_env.client, task_queue, sc, POLICY)
        [listing] = (await to_transaction(handle, sc)).listings
        await asyncio.sleep(
            max(0.0, (listing.publicity_ends_at - datetime.now(UTC)).total_seconds())
        )
        await asyncio.sleep(0.2)

        # A hostile broker field is refused by the exchange, naming it; nothing is dealt.
        bad = deal.model_dump(mode="json")
        bad["brokerage"]["technology_manager"]["certificate_number"] = "TM\u0000" + tag
        refused = await _trigger(http, stack, listing, "deal", bad)
        assert refused.status_code == 422, refused.text
        assert "brokerage.technology_manager.certificate_number" in refused.text
        too_dear = {**deal.model_dump(mode="json"), "brokerage": {
            **brokerage.model_dump(mode="json"), "service_fee": "1000000.01"}}  # fmt: skip
        assert (await _trigger(http, stack, listing, "deal", too_dear)).status_code == 422

        dealt = await _trigger(http, stack, listing, "deal", deal.model_dump(mode="json"))
        assert dealt.status_code == 202, dealt.text
        st = await until(handle, lambda s: s.contract is not None, what="the contract")
        # The exchange's signed webhook carried the broker through the gateway.
        assert st.deal is not None and st.deal.brokerage == brokerage
        for n, (amount, costs) in enumerate(payments, start=1):
            body = SimulatedPayment(instalment=n, amount=Decimal(amount), costs=Decimal(costs))
            paid = await _trigger(http, stack, listing, "payments", body.model_dump(mode="json"))
            assert paid.status_code == 202, paid.text
        st = await until(handle, lambda s: s.stage is Stage.INCUBATION, what="incubation")

        await handle.signal(
            AchievementLifecycle.company_founded,
            CompanyFounded(
                event_id=f"co-{tag}",
                company_name="Synthetic Spin-off Co (demo)",
                credit_code="91310000MA1FL8XQ3X",
                equity_share=Decimal("7.77"),
                valuation=Decimal("8000000.00"),
                founded_at=datetime.now(UTC),
            ),
        )
        st = await until(handle, lambda s: s.equity is not None, what="the equity registration")
        await handle.execute_update(
            AchievementLifecycle.withdraw, Withdrawal(reason="test over", requested_by="test")
        )
        await handle.result()
        history = await handle.fetch_history()
        await record_history(handle, "brokered_deal_fee_and_team_equity")

    # The run took both new paths (a new run records them in the one marker of every gate
    # before it), and replays with them.
    markers = [
        e.marker_recorded_event_attributes.SerializeToString()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    # Both gates are answered by the new run's one marker for every earlier gate.
    assert {patches.BROKERAGE_FEE_DEDUCTED, patches.TEAM_EQUITY_REWARD} <= (
        patches.COVERED_BY_EVERY_GATE
    )
    taken = {p.id for p in patches.LEDGER if any(p.id.encode() in m for m in markers)}
    assert taken == {patches.NEW_RUNS_TAKE_EVERY_GATE.id, patches.PROJECTION_AS_ACTIVITY.id}
    assert len(markers) == 2, markers
    await assert_replays(history, dev_env.client.data_converter, "brokered-deal")

    [closed] = [d for d in await _events(db, aid, "deal_closed") if d["accepted"]]
    assert closed["brokerage"] == brokerage.model_dump(mode="json")
    splits = [p["distribution"] for p in await _events(db, aid, "payment_received")]
    fees = [Decimal(d["service_fee"]) for d in splits]
    nets = [Decimal(d["net_income"]) for d in splits]
    assert fees == [Decimal("290000.00"), Decimal("160000.01"), Decimal("0.00")]
    assert sum(fees) == brokerage.service_fee
    assert nets == [Decimal("0.00"), Decimal("139999.99"), Decimal("400000.00")]
    for d, net in zip(splits, nets, strict=True):
        assert net >= 0
        # The team's share rounds up: 70 % of 139999.99 is 97999.993, the team gets 98000.00.
        team = (net * POLICY.team_reward_rate).quantize(CENT, rounding=ROUND_CEILING)
        assert Decimal(d["team_reward"]) == team
        parts = ("team_reward", "tto_fund", "institution", "team_owner_income")
        assert sum(Decimal(d[k]) for k in parts) == net
    assert Decimal(splits[1]["team_reward"]) == Decimal("98000.00")

    # The team's equity: the statutory 70 % of the institution's 7.77 %, rounded up (5.439).
    assert POLICY.team_reward_rate <= SHANGHAI.team_equity_floor
    assert st.equity is not None and st.equity.team_equity_share == Decimal("5.44")
    [equity] = await _events(db, aid, "equity_registered")
    assert (equity["team_equity_share"], equity["team_reward_equity_share"]) == ("5.44", "5.44")
    assert (equity["team_owned_equity_share"], equity["team_reward_rate"]) == ("0.00", "0.70")
    assert equity["institution_equity_share"] == "2.33"
    registered = await db.fetchval(
        "SELECT request FROM registry_sandbox.records WHERE kind = 'equity' AND subject = $1", aid
    )
    assert registered["team_equity_share"] == "5.44"  # the registry holds it too

    # The report's figures equal independent sums over the events of this broker.
    code, certificate = f"TTI-{tag}", f"TM-{tag}"
    year = datetime.now(ZoneInfo(SHANGHAI.time_zone)).year
    figures = await build_deals_and_equity(db, sc.disclosure.institution.code, year)
    [institution] = [b for b in figures.transfer_institutions if b.id == code]
    [manager] = [b for b in figures.technology_managers if b.id == certificate]
    deals = await db.fetchrow(
        "SELECT count(*) AS n, sum((payload->>'amount')::numeric) AS amount,"
        " sum((payload#>>'{brokerage,service_fee}')::numeric) AS fee FROM lifecycle_events"
        " WHERE type = 'deal_closed' AND payload @> $1::jsonb",
        {"accepted": True, "brokerage": {"transfer_institution": {"code": code}}},
    )
    fees_paid = await db.fetchval(
        "SELECT sum((payload#>>'{distribution,service_fee}')::numeric) FROM lifecycle_events"
        " WHERE type = 'payment_received' AND achievement_id = $1",
        aid,
    )
    assert deals is not None
    for broker in (institution, manager):
        assert (broker.deals, broker.amount, broker.fees_agreed) == (
            deals["n"],
            deals["amount"],
            deals["fee"],
        )
        assert broker.fees_paid == fees_paid == brokerage.service_fee
    assert institution.name == "Synthetic Transfer Co" and manager.name == "Li Synthetic"
    [reward] = [r for r in figures.team_equity if r.achievement_id == aid]
    team_share = await db.fetchval(
        "SELECT (payload->>'team_equity_share')::numeric FROM lifecycle_events"
        " WHERE type = 'equity_registered' AND achievement_id = $1",
        aid,
    )
    assert reward.team_equity_share == team_share
    assert (reward.team_reward_equity_share, reward.team_reward_rate) == (
        Decimal("5.44"),
        Decimal("0.70"),
    )

    # The annual report carries and renders the same figures.
    report = await build_institution_report(
        db, sc.disclosure.institution.code, year, datetime.now(UTC)
    )
    assert report.brokered is not None
    # The fees taken before the split are a row of the income part, so its rows add up.
    income = report.income
    assert income.service_fees == fees_paid
    assert income.cash_received == income.costs + income.service_fees + income.net_income
    rows = {(r["part"], r["item"]): r for r in report_rows(report)}
    for part, broker_id in (("transfer_institution", code), ("technology_manager", certificate)):
        row = rows[(part, f"{broker_id}:deals")]
        assert (row["count"], Decimal(row["amount"])) == (deals["n"], deals["amount"])
        assert Decimal(rows[(part, f"{broker_id}:fees_agreed")]["amount"]) == deals["fee"]
        assert Decimal(rows[(part, f"{broker_id}:fees_paid")]["amount"]) == fees_paid
    [in_report] = [r for r in report.brokered.team_equity if r.achievement_id == aid]
    assert in_report.team_equity_share == team_share
    html = to_html([report], year)
    assert f"TTI-{tag}" in html and f"TM-{tag}" in html and yuan(fees_paid) in html


async def test_a_hostile_broker_field_in_the_exchanges_webhook_is_422_naming_it(
    stack: Stack,
) -> None:
    """Signed as the exchange would, straight to the gateway: refused before any workflow."""
    brokerage: dict[str, Any] = {
        "transfer_institution": {"code": "TTI-1", "name": "Synthetic Transfer Co"},
        "service_fee": "10.00",
    }
    deal: dict[str, Any] = {
        "buyer": "Synthetic Buyer Ltd",
        "contract_type": "transfer",
        "amount": "1000.00",
        "instalments": 1,
        "brokerage": brokerage,
    }
    hook: dict[str, Any] = {
        "event_id": f"deal-{uuid.uuid4().hex[:8]}",
        "type": "deal",
        "exchange": "sstec",
        "listing_id": "L-NONE",
        "achievement_id": "SYN-NONE-0001",
        "occurred_at": datetime.now(UTC).isoformat(),
        "deal": deal,
    }
    secret = stack.settings.webhook_secret("sstec").get_secret_value()

    async def post(body: dict[str, Any]) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = {**sign(secret, raw, int(time.time())), "Content-Type": "application/json"}
        return await stack.http.post(
            f"{stack.gateway_url}/webhooks/sstec", content=raw, headers=headers
        )

    cases: list[tuple[dict[str, Any], str]] = [
        ({"service_fee": "-1.00"}, "deal.brokerage.service_fee"),
        ({"service_fee": 10.5}, "deal.brokerage.service_fee"),
        ({"transfer_institution": {"code": "TTI\n1", "name": "X Co"}},
         "deal.brokerage.transfer_institution.code"),
        ({"transfer_institution": None}, "deal.brokerage"),  # names no one
        ({"technology_manager": {"name": "Li", "certificate_number": "TM-1", "x": 1}},
         "deal.brokerage.technology_manager.x"),
        ({"service_fee": "1000.01"}, "deal"),  # above the deal's amount
    ]  # fmt: skip
    for change, field in cases:
        body = {**hook, "deal": {**deal, "brokerage": {**brokerage, **change}}}
        response = await post(body)
        assert response.status_code == 422, (change, response.text)
        assert _fields(response) == {field}, (change, response.text)
    assert "service_fee exceeds the deal amount" in response.text
