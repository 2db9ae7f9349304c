"""One time-skipping test per lifecycle rule, each asserting what a user would observe:
the state, the events in PostgreSQL and the calls the sandboxes recorded.

Activities are the real ones (sandboxes over HTTP, embedded PostgreSQL); the test plays the
external systems by signalling the workflow directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest_asyncio
from conftest import Stack
from lifecycle_driver import (
    Handle,
    event_types,
    finish,
    record_history,
    rejection,
    start,
    state,
    until,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli.samples import Scenario, scenario
from schemas.commands import Activation, MandatoryListingExemption, Withdrawal
from schemas.disclosure import TransformationMode
from schemas.evaluation import OperatorDecision, Recommendation
from schemas.lifecycle import Stage
from schemas.policy import DEFAULT_POLICY
from schemas.proof_of_concept import GoNoGo, PocMilestoneReport
from schemas.transaction import ContractType, Deal, ListingStatus, Payment
from workers.worker import WorkerGroup, build_worker
from workflows.ids import poc_child_id
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept

YEAR = timedelta(days=365)


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, stack: Stack, task_queue: str
) -> AsyncIterator[WorkerGroup]:
    async with build_worker(time_skipping_env.client, stack.deps, task_queue, stack.settings) as w:
        yield w


def _scenario(index: int, today: date, **changes: Any) -> Scenario:
    """Dates count from the test server's clock, which earlier tests have moved on by years."""
    base = scenario(index, uuid.uuid4().hex[:8].upper(), today)
    return dataclasses.replace(base, **changes)


async def _today(env: WorkflowEnvironment) -> date:
    return (await env.get_current_time()).date()


async def _to_transaction(handle: Handle, sc: Scenario) -> None:
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    for review in sc.reviews():
        await handle.execute_update(AchievementLifecycle.submit_review, review)
    await until(handle, lambda s: len(s.listings) == len(sc.exchanges))


def _deal(listing_id: str, exchange: str, instalments: int, event_id: str = "deal") -> Deal:
    return Deal(
        event_id=event_id,
        exchange=exchange,
        listing_id=listing_id,
        buyer="Buyer Ltd",
        contract_type=ContractType.LICENCE,
        amount=Decimal("1200000.00"),
        instalments=instalments,
        closed_at=datetime.now(UTC),
    )


def _payment(deal: Deal, n: int, amount: str) -> Payment:
    return Payment(
        event_id=f"pay-{n}",
        exchange=deal.exchange,
        listing_id=deal.listing_id,
        instalment=n,
        amount=Decimal(amount),
        paid_at=datetime.now(UTC),
    )


async def test_resource_then_activation(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(5, today)  # no intended mode
    assert sc.disclosure.intended_modes == []
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    st = await until(handle, lambda s: s.stage is Stage.RESOURCE)
    assert st.registration_number is not None
    assert st.waiting is not None and "activation" in st.waiting.on

    assert "stage" in await rejection(
        handle.execute_update(AchievementLifecycle.submit_review, sc.reviews()[0])
    )
    await handle.execute_update(
        AchievementLifecycle.activate,
        Activation(modes=[TransformationMode.LICENCE], activated_by="tto-officer"),
    )
    st = await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    assert st.modes == [TransformationMode.LICENCE]
    assert "only a resource can be activated" in await rejection(
        handle.execute_update(
            AchievementLifecycle.activate,
            Activation(modes=[TransformationMode.TRANSFER], activated_by="tto-officer"),
        )
    )
    types = await event_types(db, sc.disclosure.achievement_id)
    assert types.index("held_as_resource") < types.index("activated")
    await record_history(handle, "resource_then_activation")
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


async def test_review_sla_reminder_escalation_and_no_silent_abandon(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(0, today)  # municipal finance
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    await handle.execute_update(AchievementLifecycle.submit_review, sc.reviews()[0])
    assert "has already reviewed" in await rejection(
        handle.execute_update(AchievementLifecycle.submit_review, sc.reviews()[0])
    )

    await time_skipping_env.sleep(timedelta(days=31))
    st = await until(handle, lambda s: s.review_reminded)
    assert not st.review_escalated
    await time_skipping_env.sleep(timedelta(days=8))
    st = await until(handle, lambda s: s.review_escalated)
    assert st.waiting is not None and "operator" in st.waiting.on

    # An operator's 'abandon' of municipal money becomes a resource under the listing clock.
    await handle.execute_update(
        AchievementLifecycle.decide,
        OperatorDecision(route=Recommendation.ABANDON, decided_by="director", reason="no market"),
    )
    st = await until(handle, lambda s: s.stage is Stage.RESOURCE)
    assert st.evaluation is not None and st.evaluation.route is Recommendation.RESOURCE
    assert "municipal" in st.evaluation.decided_by
    types = await event_types(db, sc.disclosure.achievement_id)
    assert types.count("review_reminder") == 1 and types.count("review_escalated") == 1
    assert "abandoned" not in types
    await record_history(handle, "review_sla_escalation")
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


async def test_poc_overdue_milestone_and_no_go(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool, stack: Stack
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(1, today)  # immature: proof of concept
    assert sc.needs_poc
    client = time_skipping_env.client
    handle = await start(client, worker.task_queue, sc, DEFAULT_POLICY)
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    for review in sc.reviews():
        await handle.execute_update(AchievementLifecycle.submit_review, review)
    await until(handle, lambda s: s.stage is Stage.PROOF_OF_CONCEPT)
    child = client.get_workflow_handle_for(ProofOfConcept.run, poc_child_id(handle.id))
    progress = await until_child_has_milestones(child)
    first, second = progress["milestones"][0], progress["milestones"][1]

    # The first milestone passes its due date unreported; the second is reported in time.
    await _sleep_past(time_skipping_env, date.fromisoformat(first["due"]) + timedelta(days=2))
    await child.signal(
        ProofOfConcept.milestone_reported,
        PocMilestoneReport(
            event_id="m2",
            milestone_id=second["milestone_id"],
            achieved=True,
            reported_at=datetime.now(UTC),
        ),
    )
    await child.signal(
        ProofOfConcept.milestone_reported,
        PocMilestoneReport(
            event_id="m2",
            milestone_id=second["milestone_id"],
            achieved=True,
            reported_at=datetime.now(UTC),
        ),
    )  # redelivered: no second effect
    go = await child.execute_update(
        ProofOfConcept.go_no_go,
        GoNoGo(
            technical_feasible=True,
            market_feasible=False,
            decided_by="committee",
            reason="no buyer at this cost",
        ),
    )
    assert go is False
    st = await until(handle, lambda s: s.stage is Stage.RESOURCE)
    assert st.poc is not None
    assert st.poc.milestones_overdue == [first["milestone_id"]]
    assert st.poc.milestones_achieved == 1 and not st.poc.go
    types = await event_types(db, sc.disclosure.achievement_id)
    assert types.count("poc_milestone_overdue") == 1
    assert (await stack.records("registry"))["poc_applications"][sc.disclosure.achievement_id] == 1
    await record_history(handle, "poc_no_go")
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


async def _sleep_past(env: WorkflowEnvironment, day: date) -> None:
    """Skip time until the server's clock is past `day` (a single skip may stop short)."""
    for _ in range(20):
        now = await env.get_current_time()
        if now.date() > day:
            return
        await env.sleep(datetime.combine(day, datetime.min.time(), UTC) - now + timedelta(days=1))
    raise AssertionError(f"the test server's clock never passed {day}")


async def until_child_has_milestones(child: Any) -> dict[str, Any]:
    for _ in range(200):
        try:
            progress: dict[str, Any] = await child.query(ProofOfConcept.progress)
            if progress["milestones"]:
                return progress
        except RPCError:  # the child may not have started its first task yet
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the proof-of-concept child never reported its milestones")


async def test_mandatory_listing_fires_from_resource_after_years(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool, stack: Stack
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(
        0,
        today,
        disclosure=_scenario(0, today).disclosure.model_copy(update={"intended_modes": []}),
    )
    aid = sc.disclosure.achievement_id
    deadline = sc.disclosure.municipal_deadline
    assert deadline is not None
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await until(handle, lambda s: s.stage is Stage.RESOURCE)
    await time_skipping_env.sleep(2 * YEAR)
    assert (await state(handle)).stage is Stage.RESOURCE
    await time_skipping_env.sleep(YEAR + timedelta(days=5))
    st = await until(handle, lambda s: bool(s.listings))
    assert st.stage is Stage.TRANSACTION and st.mandatory_listing_triggered
    assert all(x.mandatory for x in st.listings)
    assert st.timeline[-1].entered_at.date() > deadline
    types = await event_types(db, aid)
    assert types.count("mandatory_listing_triggered") == 1
    assert (await stack.records("exchange"))["listings"][aid] == {"sstec": 1, "jstec": 1}
    await record_history(handle, "mandatory_listing_from_resource")
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


async def test_exemption_stops_the_mandatory_listing(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(
        0,
        today,
        disclosure=_scenario(0, today).disclosure.model_copy(update={"intended_modes": []}),
    )
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await until(handle, lambda s: s.stage is Stage.RESOURCE)
    exemption = MandatoryListingExemption(
        justification="classified defence application, transfer restricted by the funder",
        approved_by="commission",
    )
    await handle.execute_update(AchievementLifecycle.exempt_mandatory_listing, exemption)
    assert "already exempted" in await rejection(
        handle.execute_update(AchievementLifecycle.exempt_mandatory_listing, exemption)
    )
    await time_skipping_env.sleep(4 * YEAR)
    st = await state(handle)
    assert st.stage is Stage.RESOURCE and not st.listings and st.mandatory_listing_exempted
    types = await event_types(db, sc.disclosure.achievement_id)
    assert "mandatory_listing_exempted" in types
    assert "mandatory_listing_triggered" not in types
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


async def test_no_mandatory_listing_when_a_contract_is_registered_in_time(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(0, today, exchanges=["sstec"])
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await _to_transaction(handle, sc)
    await time_skipping_env.sleep(timedelta(days=16))
    listing = (await state(handle)).listings[0]
    deal = _deal(listing.listing_id, "sstec", instalments=2)
    await handle.signal(AchievementLifecycle.exchange_deal, deal)
    await until(handle, lambda s: s.contract is not None)
    await handle.signal(AchievementLifecycle.exchange_payment, _payment(deal, 1, "600000.00"))
    # The buyer is late with the second instalment, past the municipal deadline.
    await time_skipping_env.sleep(4 * YEAR)
    st = await state(handle)
    assert st.overdue_instalments == [2] and st.stage is Stage.TRANSACTION
    await handle.signal(AchievementLifecycle.exchange_payment, _payment(deal, 2, "600000.00"))
    result = await handle.result()
    assert result.final_stage is Stage.COMPLETED and result.total_received == "1200000.00"
    types = await event_types(db, sc.disclosure.achievement_id)
    assert "mandatory_listing_triggered" not in types
    assert types.count("payment_overdue") == 1
    await record_history(handle, "contract_in_time_late_payment")


async def test_withdraw_mid_transaction_withdraws_every_open_listing(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool, stack: Stack
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(0, today, exchanges=["sstec", "jstec", "zjtec"])
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await _to_transaction(handle, sc)
    await handle.execute_update(
        AchievementLifecycle.withdraw,
        Withdrawal(reason="the inventors left for industry", requested_by="tto-director"),
    )
    result = await handle.result()
    assert result.final_stage is Stage.WITHDRAWN
    assert result.reason == "the inventors left for industry"
    assert result.report_number is not None  # the registry still gets its lifecycle report
    st = await state(handle)
    assert [x.status for x in st.listings] == [ListingStatus.WITHDRAWN] * 3
    records = await stack.records("exchange")
    assert records["withdrawals"][aid] == {"sstec": 1, "jstec": 1, "zjtec": 1}
    types = await event_types(db, aid)
    assert types.count("listing_withdrawn") == 3 and types[-1] == "withdrawn"
    await record_history(handle, "withdraw_mid_transaction")


async def test_deal_on_second_exchange_withdraws_the_first_exactly_once(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool, stack: Stack
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(
        3, today, exchanges=["sstec", "jstec"]
    )  # cooperative implementation, one instalment
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await _to_transaction(handle, sc)
    await time_skipping_env.sleep(timedelta(days=15, minutes=1))
    listings = (await state(handle)).listings
    second = _deal(listings[1].listing_id, "jstec", instalments=1, event_id="deal-jstec")
    first = _deal(listings[0].listing_id, "sstec", instalments=1, event_id="deal-sstec")
    await handle.signal(AchievementLifecycle.exchange_deal, second)
    await handle.signal(AchievementLifecycle.exchange_deal, first)  # too late: second won
    await handle.signal(AchievementLifecycle.exchange_deal, second)  # redelivered
    await until(handle, lambda s: s.contract is not None)
    await handle.signal(AchievementLifecycle.exchange_payment, _payment(second, 1, "1200000.00"))
    result = await handle.result()
    assert result.final_stage is Stage.COMPLETED
    st = await state(handle)
    assert st.deal is not None and st.deal.exchange == "jstec"
    assert (await stack.records("exchange"))["withdrawals"][aid] == {"sstec": 1}
    types = await event_types(db, aid)
    assert types.count("listing_withdrawn") == 1 and types.count("contract_registered") == 1
    await record_history(handle, "deal_on_second_exchange")


async def test_an_exchange_speaks_only_for_its_own_listings(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool
) -> None:
    today = await _today(time_skipping_env)
    sc = _scenario(3, today, exchanges=["sstec", "jstec"])
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await _to_transaction(handle, sc)
    await time_skipping_env.sleep(timedelta(days=15, minutes=1))
    jstec_listing = (await state(handle)).listings[1]
    assert jstec_listing.exchange == "jstec"
    # sstec claims a deal on jstec's listing: refused and recorded, never applied.
    forged = _deal(jstec_listing.listing_id, "sstec", instalments=1, event_id="forged")
    await handle.signal(AchievementLifecycle.exchange_deal, forged)
    real = _deal(jstec_listing.listing_id, "jstec", instalments=1, event_id="real")
    await handle.signal(AchievementLifecycle.exchange_deal, real)
    st = await until(handle, lambda s: s.deal is not None)
    assert st.deal is not None and st.deal.event_id == "real"
    await until(handle, lambda s: s.contract is not None)
    rows = await db.fetch(
        "SELECT payload FROM lifecycle_events WHERE achievement_id = $1 AND type = 'deal_closed'"
        " ORDER BY seq",
        aid,
    )
    refused, accepted = (r["payload"] for r in rows)
    assert refused["event_id"] == "forged" and refused["accepted"] is False
    assert refused["reason"] == "the listing is on jstec, not sstec"
    assert accepted["event_id"] == "real" and accepted["accepted"] is True
    await handle.execute_update(
        AchievementLifecycle.withdraw, Withdrawal(reason="test over", requested_by="test")
    )
    # Finished, not left running: the shared time-skipping server cannot skip time past an
    # orphaned lifecycle's pending tasks.
    assert (await handle.result()).final_stage is Stage.WITHDRAWN


def test_scenarios_cover_the_paths() -> None:
    today = date(2026, 1, 1)
    paths = {
        (bool(scenario(i, "T", today).disclosure.intended_modes), scenario(i, "T", today).needs_poc)
        for i in range(6)
    }
    assert paths == {(True, True), (True, False), (False, False)}
