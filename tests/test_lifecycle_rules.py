"""One time-skipping test per lifecycle rule, each asserting what a user would observe:
the state, the events in PostgreSQL and the calls the sandboxes recorded.

Activities are the real ones (sandboxes over HTTP, embedded PostgreSQL); the test plays the
external systems by signalling the workflow directly. The same rules with canned systems, in
seconds: tests/test_lifecycle_fast.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio
from conftest import Stack
from helpers import scenarios
from helpers.eventually import assert_eventually
from helpers.lifecycle import (
    deal,
    event_types,
    finish,
    payment,
    record_history,
    rejection,
    sleep_past,
    start,
    state,
    to_transaction,
    today,
    until,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli.samples import Scenario
from schemas.commands import Activation, MandatoryListingExemption, Withdrawal
from schemas.disclosure import TransformationMode
from schemas.evaluation import OperatorDecision, Recommendation
from schemas.lifecycle import Stage
from schemas.policy import DEFAULT_POLICY
from schemas.proof_of_concept import GoNoGo, PocMilestoneReport
from schemas.transaction import ListingStatus
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


async def test_resource_then_activation(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool
) -> None:
    sc = scenarios.resource_first(await today(time_skipping_env))
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
    sc = scenarios.municipal_transfer(await today(time_skipping_env))
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
    sc = scenarios.immature_licence(await today(time_skipping_env))
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
    await sleep_past(time_skipping_env, date.fromisoformat(first["due"]) + timedelta(days=2))
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


async def until_child_has_milestones(child: Any) -> dict[str, Any]:
    async def milestones() -> dict[str, Any]:
        try:
            progress: dict[str, Any] = await child.query(ProofOfConcept.progress)
        except RPCError as err:  # the child may not have started its first task yet
            raise AssertionError(f"no answer yet: {err}") from err
        assert progress["milestones"], progress
        return progress

    return await assert_eventually(milestones, what="the proof-of-concept child's milestones")


async def test_mandatory_listing_fires_from_resource_after_years(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool, stack: Stack
) -> None:
    sc = scenarios.municipal_resource(await today(time_skipping_env))
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
    sc = scenarios.municipal_resource(await today(time_skipping_env))
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
    sc = scenarios.municipal_transfer(await today(time_skipping_env), exchanges=["sstec"])
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await to_transaction(handle, sc)
    await time_skipping_env.sleep(timedelta(days=16))
    listing = (await state(handle)).listings[0]
    the_deal = deal(listing.listing_id, "sstec", instalments=2)
    await handle.signal(AchievementLifecycle.exchange_deal, the_deal)
    await until(handle, lambda s: s.contract is not None)
    await handle.signal(AchievementLifecycle.exchange_payment, payment(the_deal, 1, "600000.00"))
    # The buyer is late with the second instalment, past the municipal deadline.
    await time_skipping_env.sleep(4 * YEAR)
    st = await state(handle)
    assert st.overdue_instalments == [2] and st.stage is Stage.TRANSACTION
    await handle.signal(AchievementLifecycle.exchange_payment, payment(the_deal, 2, "600000.00"))
    result = await handle.result()
    assert result.final_stage is Stage.COMPLETED and result.total_received == "1200000.00"
    types = await event_types(db, sc.disclosure.achievement_id)
    assert "mandatory_listing_triggered" not in types
    assert types.count("payment_overdue") == 1
    await record_history(handle, "contract_in_time_late_payment")


async def test_withdraw_mid_transaction_withdraws_every_open_listing(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, db: asyncpg.Pool, stack: Stack
) -> None:
    sc = scenarios.municipal_transfer(
        await today(time_skipping_env), exchanges=["sstec", "jstec", "zjtec"]
    )
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await to_transaction(handle, sc)
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
    sc = scenarios.cooperative_development(
        await today(time_skipping_env), exchanges=["sstec", "jstec"]
    )
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await to_transaction(handle, sc)
    await time_skipping_env.sleep(timedelta(days=15, minutes=1))
    listings = (await state(handle)).listings
    second = deal(listings[1].listing_id, "jstec", instalments=1, event_id="deal-jstec")
    first = deal(listings[0].listing_id, "sstec", instalments=1, event_id="deal-sstec")
    await handle.signal(AchievementLifecycle.exchange_deal, second)
    await handle.signal(AchievementLifecycle.exchange_deal, first)  # too late: second won
    await handle.signal(AchievementLifecycle.exchange_deal, second)  # redelivered
    await until(handle, lambda s: s.contract is not None)
    await handle.signal(AchievementLifecycle.exchange_payment, payment(second, 1, "1200000.00"))
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
    sc = scenarios.cooperative_development(
        await today(time_skipping_env), exchanges=["sstec", "jstec"]
    )
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await to_transaction(handle, sc)
    await time_skipping_env.sleep(timedelta(days=15, minutes=1))
    jstec_listing = (await state(handle)).listings[1]
    assert jstec_listing.exchange == "jstec"
    # sstec claims a deal on jstec's listing: refused and recorded, never applied.
    forged = deal(jstec_listing.listing_id, "sstec", instalments=1, event_id="forged")
    await handle.signal(AchievementLifecycle.exchange_deal, forged)
    real = deal(jstec_listing.listing_id, "jstec", instalments=1, event_id="real")
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


def test_scenarios_are_what_their_names_say() -> None:
    day = date(2026, 1, 1)

    def path(sc: Scenario) -> tuple[list[TransformationMode], bool, bool, int]:
        d = sc.disclosure
        return (d.intended_modes, sc.needs_poc, d.municipal_deadline is not None, len(sc.exchanges))

    transfer, licence = [TransformationMode.TRANSFER], [TransformationMode.LICENCE]
    company = [TransformationMode.TRANSFER, TransformationMode.EQUITY_INVESTMENT]
    assert path(scenarios.municipal_transfer(day)) == (transfer, False, True, 2)
    assert path(scenarios.municipal_resource(day)) == ([], False, True, 2)
    assert path(scenarios.immature_licence(day)) == (licence, True, False, 1)
    assert path(scenarios.transfer_then_company(day)) == (company, False, True, 1)
    assert path(scenarios.cooperative_development(day)) == (
        [TransformationMode.COOPERATIVE_IMPLEMENTATION],
        False,
        False,
        1,
    )
    assert path(scenarios.equity_after_proof_of_concept(day)) == (
        [TransformationMode.EQUITY_INVESTMENT],
        True,
        True,
        2,
    )
    assert path(scenarios.resource_first(day)) == ([], False, False, 1)
    assert path(scenarios.transfer_then_company_on_two_exchanges(day)) == (company, False, True, 2)
    # Each call is a new achievement: tests never collide on a workflow id.
    ids = {scenarios.resource_first(day).disclosure.achievement_id for _ in range(3)}
    assert len(ids) == 3
