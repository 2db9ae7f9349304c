"""The transfer fund (plan item 4, issue 13 item 3) on real parts: the dev server, PostgreSQL,
the gateway over loopback HTTP and tokens from the local issuer.

Each test has a fund of its own (a fresh institution code) or, through the gateway, measures
the change it makes, since other tests may accrue to the same institution.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from conftest import Stack
from helpers import scenarios
from helpers.continue_as_new import SuggestContinueAsNew
from helpers.eventually import assert_eventually
from helpers.lifecycle import (
    deal,
    end_if_open,
    payment,
    record_history,
    start,
    to_transaction,
    until,
)
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.fund import FundActivities
from activities.report.amounts import yuan
from activities.report.rows import report_rows
from activities.report_fund import fund_year
from activities.report_render import to_html
from activities.reports import build_institution_report
from core.policy_book import DEMO_POLICY
from schemas.fund import FundAccrual, FundBalance, FundState, FundUse, FundUseRequest
from schemas.identity import Actor, Role
from schemas.lifecycle import Stage
from workers.worker import build_worker
from workflows.ids import fund_workflow_id
from workflows.lifecycle import AchievementLifecycle
from workflows.transfer_fund import TransferFund

OWN, OTHER = "SYN-UNI", "SYN-OTHER"


def _institution() -> str:
    return f"FUND-{uuid.uuid4().hex[:8].upper()}"


def _officer(institution: str, subject: str = "officer") -> Actor:
    return Actor(subject=subject, role=Role.TTO_OFFICER, institution=institution)


def _approver(institution: str, subject: str = "approver") -> Actor:
    return Actor(subject=subject, role=Role.APPROVER, institution=institution)


def _accrual(institution: str, amount: str, n: int = 1) -> FundAccrual:
    return FundAccrual(
        institution=institution,
        achievement_id="ACH-1",
        payment_event_id=f"pay-{n}",
        amount=Decimal(amount),
        paid_at=datetime.now(UTC),
        actor="lifecycle:test",
    )


async def _accrue(
    client: Client, task_queue: str, accrual: FundAccrual
) -> WorkflowHandle[Any, Any]:
    """What FundActivities.accrue does for a lifecycle: signal-with-start the fund."""
    return await client.start_workflow(
        TransferFund.run,
        FundState(institution=accrual.institution, jurisdiction="CN-SH"),
        id=fund_workflow_id(accrual.institution),
        task_queue=task_queue,
        start_signal="accrue",
        start_signal_args=[accrual],
    )


async def _balance(handle: WorkflowHandle[Any, Any]) -> FundBalance:
    result: FundBalance = await handle.query(TransferFund.balance)
    return result


async def _projected(db: asyncpg.Pool, handle: WorkflowHandle[Any, Any], institution: str) -> None:
    """The ledger in PostgreSQL holds every entry, and its sums give the workflow's balance."""

    async def equal() -> None:
        fund = await _balance(handle)
        assert fund.unprojected == 0
        row = await db.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(CASE kind WHEN 'accrual' THEN amount"
            " ELSE -amount END), 0) AS balance FROM fund_entries WHERE institution_code = $1",
            institution,
        )
        assert row is not None
        assert (row["n"], row["balance"]) == (fund.entries, fund.balance)

    await assert_eventually(equal, what="the ledger to equal the fund's balance")


async def test_each_payment_accrues_once(
    dev_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool, task_queue: str
) -> None:
    """The lifecycle sends each payment's fund share once; a redelivered payment and a retried
    accrual (the same key again) add nothing."""
    client = dev_env.client
    institution = _institution()
    sc = scenarios.cooperative_development(datetime.now(UTC).date())
    disclosure = sc.disclosure.model_copy(
        update={"institution": sc.disclosure.institution.model_copy(update={"code": institution})}
    )
    sc = scenarios.cooperative_development(datetime.now(UTC).date(), disclosure=disclosure)
    policy = DEMO_POLICY.model_copy(update={"publicity_period": timedelta(0)})
    async with build_worker(client, stack.deps, task_queue, stack.settings):
        handle = await start(client, task_queue, sc, policy)
        try:
            listing = (await to_transaction(handle, sc)).listings[0]
            the_deal = deal(listing.listing_id, listing.exchange, instalments=2)
            await handle.signal(AchievementLifecycle.exchange_deal, the_deal)
            await until(handle, lambda s: s.contract is not None)
            first = payment(the_deal, 1, "600000.00")
            await handle.signal(AchievementLifecycle.exchange_payment, first)
            await handle.signal(AchievementLifecycle.exchange_payment, first)  # redelivered
            await until(handle, lambda s: s.fund_accrued == ["pay-1"])
            await handle.signal(
                AchievementLifecycle.exchange_payment, payment(the_deal, 2, "600000.00")
            )
            done = await until(handle, lambda s: s.stage is not Stage.TRANSACTION)
        finally:
            await end_if_open(handle)
        assert done.fund_accrued == ["pay-1", "pay-2"]
        shares = sum(p.distribution.tto_fund for p in done.payments)
        assert shares > 0
        fund = client.get_workflow_handle(fund_workflow_id(institution))
        assert (await _balance(fund)).balance == shares
        # A retried activity delivers the same accrual again: nothing changes.
        again = FundAccrual(
            institution=institution,
            achievement_id=sc.disclosure.achievement_id,
            payment_event_id="pay-1",
            amount=done.payments[0].distribution.tto_fund,
            paid_at=done.payments[0].payment.paid_at,
            actor=f"lifecycle:{handle.id}",
        )
        await _accrue(client, task_queue, again)
        await _projected(db, fund, institution)
        after = await _balance(fund)
        assert (after.balance, after.entries) == (shares, 2)
        entries = await db.fetch(
            "SELECT payment_event_id, amount, actor FROM fund_entries"
            " WHERE institution_code = $1 ORDER BY seq",
            institution,
        )
        assert [(e["payment_event_id"], e["amount"]) for e in entries] == [
            (p.payment.event_id, p.distribution.tto_fund) for p in done.payments
        ]
        assert {e["actor"] for e in entries} == {f"lifecycle:{handle.id}"}


async def test_uses_never_below_zero_and_idempotent(
    dev_env: WorkflowEnvironment, db: asyncpg.Pool, stack: Stack, task_queue: str
) -> None:
    client = dev_env.client
    institution = _institution()
    officer, approver = _officer(institution), _approver(institution)

    def use(request_id: str, amount: str, who: Actor = approver) -> FundUse:
        request = FundUseRequest(request_id=request_id, amount=Decimal(amount), purpose="patents")
        return FundUse(institution=institution, request=request, officer=officer, approver=who)

    async with build_worker(client, stack.deps, task_queue, stack.settings):
        fund = await _accrue(client, task_queue, _accrual(institution, "100.00"))
        first = await fund.execute_update(TransferFund.use, use("u-1", "30.00"))
        assert (first.balance, first.duplicate) == (Decimal("70.00"), False)
        try:
            await fund.execute_update(TransferFund.use, use("u-2", "70.01"))
            raise AssertionError("a use above the balance was accepted")
        except WorkflowUpdateFailedError as err:
            assert isinstance(err.cause, ApplicationError)
            assert err.cause.type == "InsufficientFundBalance"
            assert err.cause.message == "amount: 70.01 exceeds the fund's balance of 70.00"
        for stranger in (_approver("ELSEWHERE"), _officer(institution, "approver")):
            try:
                await fund.execute_update(TransferFund.use, use("u-3", "1.00", stranger))
                raise AssertionError("a use without an approver of the fund was accepted")
            except WorkflowUpdateFailedError as err:
                assert isinstance(err.cause, ApplicationError)
                assert err.cause.message.startswith("approver: must be")
        again = await fund.execute_update(TransferFund.use, use("u-1", "30.00"))
        assert (again.balance, again.duplicate, again.entry_id) == (
            Decimal("70.00"),
            True,
            first.entry_id,
        )
        # Exactly to zero is allowed.
        last = await fund.execute_update(TransferFund.use, use("u-4", "70.00"))
        assert last.balance == Decimal("0.00")
        await _projected(db, fund, institution)
        await record_history(fund, "transfer-fund-uses")
        uses = await db.fetch(
            "SELECT amount, purpose, approver, actor FROM fund_entries"
            " WHERE institution_code = $1 AND kind = 'use' ORDER BY seq",
            institution,
        )
        assert [tuple(u.values()) for u in uses] == [
            (Decimal("30.00"), "patents", "approver:approver", "tto-officer:officer"),
            (Decimal("70.00"), "patents", "approver:approver", "tto-officer:officer"),
        ]


async def test_continue_as_new_keeps_balance_and_keys(
    dev_env: WorkflowEnvironment, db: asyncpg.Pool, stack: Stack, task_queue: str
) -> None:
    """The server's suggestion (through the interceptor of tests/helpers) makes the fund
    continue as new; the balance and the keys of earlier accruals go with it."""
    client = dev_env.client
    institution = _institution()
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[TransferFund],
        activities=[FundActivities(stack.deps.pool).record_entries],
        interceptors=[SuggestContinueAsNew(after_events=20)],
    )
    async with worker:
        fund = await _accrue(client, task_queue, _accrual(institution, "10.00", 0))
        first_run = (await fund.describe()).run_id
        for n in range(1, 12):
            await _accrue(client, task_queue, _accrual(institution, "10.00", n))

        async def continued() -> None:
            assert (await fund.describe()).run_id != first_run
            assert (await _balance(fund)).balance == Decimal("120.00")

        await assert_eventually(continued, what="a continued run with every accrual")
        await _accrue(client, task_queue, _accrual(institution, "10.00", 0))  # a retry
        await _projected(db, fund, institution)
        assert (await _balance(fund)).balance == Decimal("120.00")
        await fund.terminate("test over")


async def test_fund_through_the_gateway(
    dev_env: WorkflowEnvironment, db: asyncpg.Pool, stack: Stack
) -> None:
    """An officer with an approver's token uses the fund; everyone else is refused clearly."""
    client, url = dev_env.client, f"{stack.gateway_url}/funds/{OWN}"
    queue = stack.settings.task_queue
    officer = await stack.headers("officer.syn-uni")
    approver = await stack.headers("approver.syn-uni")
    approval = {"X-Approver-Token": approver["Authorization"]}
    request_id = f"use-{uuid.uuid4().hex[:8]}"
    body = {"request_id": request_id, "amount": "12.34", "purpose": "patent maintenance"}

    async def post(headers: dict[str, str], json: dict[str, Any] = body) -> Any:
        return await stack.http.post(f"{url}/uses", json=json, headers=headers)

    async with build_worker(client, stack.deps, queue, stack.settings):
        seed = _accrual(OWN, "50.00", 0).model_copy(
            update={"payment_event_id": f"pay-{request_id}"}
        )
        fund = await _accrue(client, queue, seed)
        await _projected(db, fund, OWN)
        before = (await _balance(fund)).balance

        used = await post(officer | approval)
        assert used.status_code == 200, used.text
        assert Decimal(used.json()["balance"]) == before - Decimal("12.34")
        again = await post(officer | approval)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert (await _balance(fund)).balance == before - Decimal("12.34")

        too_much = await post(officer | approval, {**body, "request_id": "big", "amount": "1E+13"})
        assert too_much.status_code == 422
        assert [e["field"] for e in too_much.json()["detail"]] == ["amount"]
        above = {**body, "request_id": f"{request_id}-x", "amount": str(before * 2)}
        refused = await post(officer | approval, above)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["field"] == "amount"
        assert "exceeds the fund's balance" in refused.json()["detail"][0]["message"]

        no_approval = await post(officer)
        assert no_approval.status_code == 422
        assert no_approval.json()["detail"][0]["field"] == "header.X-Approver-Token"
        # The approver alone, or an expert: not an officer (403 naming the role).
        assert (await post(approver)).status_code == 403
        assert (await post(await stack.headers("expert-a") | approval)).status_code == 403
        # The officer approving themselves, an approver of another institution: 403.
        self_approved = {"X-Approver-Token": officer["Authorization"]}
        assert (await post(officer | self_approved)).status_code == 403
        other_approver = await stack.headers("approver.syn-other")
        foreign = {"X-Approver-Token": other_approver["Authorization"]}
        assert (await post(officer | foreign)).status_code == 403
        # An officer of another institution: the fund does not exist for them.
        other_officer = await stack.headers("officer.syn-other")
        assert (await post(other_officer | approval)).status_code == 404

        await _projected(db, fund, OWN)
        balance = (await _balance(fund)).balance
        view = await stack.http.get(url, headers=approver)
        assert view.status_code == 200, view.text
        assert Decimal(view.json()["balance"]) == balance
        mine = [e for e in view.json()["entries"] if e["entry_id"] == f"use/{request_id}"]
        assert [(e["actor"], e["approver"]) for e in mine] == [
            ("tto-officer:officer.syn-uni", "approver:approver.syn-uni")
        ]
        assert (await stack.http.get(url, headers=other_officer)).status_code == 404
        regulator = await stack.headers("regulator.shstc")
        assert (await stack.http.get(url, headers=regulator)).status_code == 200


async def test_fund_year_equals_an_independent_sum(
    dev_env: WorkflowEnvironment, db: asyncpg.Pool, stack: Stack, task_queue: str
) -> None:
    """The report's figures of the fund, by business date on Shanghai's calendar: a payment
    made at 00:30 on 1 January in Shanghai (still 31 December in UTC) is the new year's."""
    client = dev_env.client
    institution = _institution()
    this_year = datetime.now(ZoneInfo("Asia/Shanghai")).year
    last_year = this_year - 1
    paid = {
        "pay-1": ("100.00", datetime(last_year, 6, 1, 2, tzinfo=UTC)),
        "pay-2": ("25.00", datetime(last_year, 12, 31, 15, 30, tzinfo=UTC)),  # 23:30 there
        "pay-3": ("50.00", datetime(last_year, 12, 31, 16, 30, tzinfo=UTC)),  # 00:30 there
    }
    officer, approver = _officer(institution), _approver(institution)
    async with build_worker(client, stack.deps, task_queue, stack.settings):
        for n, (key, (amount, at)) in enumerate(paid.items()):
            accrual = _accrual(institution, amount, n).model_copy(
                update={"payment_event_id": key, "paid_at": at}
            )
            fund = await _accrue(client, task_queue, accrual)
        for request_id, amount, purpose in [
            ("u-1", "30.00", "patent maintenance"),
            ("u-2", "20.00", "training"),
            ("u-3", "10.00", "patent maintenance"),
        ]:
            request = FundUseRequest(request_id=request_id, amount=Decimal(amount), purpose=purpose)
            use = FundUse(
                institution=institution, request=request, officer=officer, approver=approver
            )
            await fund.execute_update(TransferFund.use, use)
        await _projected(db, fund, institution)
        balance = (await _balance(fund)).balance

    before, now = (
        await fund_year(db, institution, last_year),
        await fund_year(db, institution, this_year),
    )
    # Independent: the year of business_at in Shanghai, not the stored business_date.
    sums = {
        (r["year"], r["kind"]): r["amount"]
        for r in await db.fetch(
            "SELECT extract(year FROM business_at AT TIME ZONE 'Asia/Shanghai')::int AS year,"
            " kind, sum(amount) AS amount FROM fund_entries WHERE institution_code = $1"
            " GROUP BY 1, 2",
            institution,
        )
    }
    assert (before.accrued, before.used) == (sums[(last_year, "accrual")], Decimal("0"))
    assert (now.accrued, now.used) == (sums[(this_year, "accrual")], sums[(this_year, "use")])
    assert (before.opening_balance, before.accrued, before.closing_balance) == (
        Decimal("0"),
        Decimal("125.00"),
        Decimal("125.00"),
    )
    assert (now.opening_balance, now.accrued, now.used, now.closing_balance) == (
        Decimal("125.00"),
        Decimal("50.00"),
        Decimal("60.00"),
        balance,
    )
    assert [(p.purpose, p.uses, p.amount) for p in now.by_purpose] == [
        ("patent maintenance", 2, Decimal("40.00")),
        ("training", 1, Decimal("20.00")),
    ]

    # The annual report of the year carries and renders the same figures.
    report = await build_institution_report(db, institution, this_year, datetime.now(UTC))
    assert report.fund == now
    closing = await db.fetchval(
        "SELECT sum(CASE kind WHEN 'accrual' THEN amount ELSE -amount END) FROM fund_entries"
        " WHERE institution_code = $1",
        institution,
    )
    rows = {(r["part"], r["item"]): r for r in report_rows(report)}
    assert Decimal(rows[("fund", "closing_balance")]["amount"]) == closing == balance
    assert Decimal(rows[("fund", "opening_balance")]["amount"]) == before.closing_balance
    html = to_html([report], this_year)
    assert 'data-part="fund"' in html and "patent maintenance" in html and yuan(closing) in html


async def test_the_demo_records_fund_uses_once(
    dev_env: WorkflowEnvironment, db: asyncpg.Pool, stack: Stack
) -> None:
    """The demo's call site: the officer's uses with the approver's token, once per run tag."""
    from cli.demo import Parties
    from cli.demo_fund import record_fund_uses

    queue, tag = stack.settings.task_queue, uuid.uuid4().hex[:8]
    parties = Parties(stack.http, stack.settings, stack.tokens)
    async with build_worker(dev_env.client, stack.deps, queue, stack.settings):
        seed = _accrual(OWN, "80.00").model_copy(update={"payment_event_id": f"demo-{tag}"})
        fund = await _accrue(dev_env.client, queue, seed)
        await _projected(db, fund, OWN)
        await record_fund_uses(parties, [OWN, OWN], tag)
        await record_fund_uses(parties, [OWN], tag)  # the same run again: nothing twice
        await _projected(db, fund, OWN)
    rows = await db.fetch(
        "SELECT entry_id, purpose, approver, actor FROM fund_entries"
        " WHERE institution_code = $1 AND entry_id LIKE $2 ORDER BY seq",
        OWN,
        f"use/demo-{tag}-%",
    )
    assert [(r["entry_id"], r["approver"], r["actor"]) for r in rows] == [
        (f"use/demo-{tag}-{n}", "approver:approver.syn-uni", "tto-officer:officer.syn-uni")
        for n in (1, 2)
    ]
