"""Whole lifecycles on the time-skipping test server, years in seconds.

Activities are the real ones: they cross real HTTP into the registry and exchange sandboxes
and append to the embedded PostgreSQL. External systems' signals are sent by the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest_asyncio
from conftest import Stack
from helpers import scenarios
from helpers.lifecycle import finish, record_history, start, today, until
from helpers.settled import Settled
from temporalio.testing import WorkflowEnvironment

from schemas.incubation import (
    CompanyFounded,
    ExitKind,
    IncubationExit,
    IncubationMilestone,
    IncubationMilestoneKind,
    IncubatorAdmission,
)
from schemas.lifecycle import Stage
from schemas.policy import DEFAULT_POLICY
from schemas.transaction import ContractType, Deal, ListingStatus, Payment
from workers.worker import WorkerGroup, build_worker
from workflows.lifecycle import AchievementLifecycle


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, stack: Stack, task_queue: str
) -> AsyncIterator[WorkerGroup]:
    """The production worker on the test's queue, running before the test starts, as a
    deployment's is before any lifecycle: building it validates every workflow definition in a
    fresh sandbox, which is the worker's start-up cost, not the lifecycle's."""
    async with build_worker(
        time_skipping_env.client, stack.deps, task_queue, stack.settings
    ) as group:
        yield group


async def test_five_year_lifecycle_deal_on_second_exchange(
    time_skipping_env: WorkflowEnvironment,
    stack: Stack,
    db: asyncpg.Pool,
    worker: WorkerGroup,
) -> None:
    env = time_skipping_env
    sc = scenarios.transfer_then_company(
        await today(env), exchanges=["sstec", "jstec"], instalments=2
    )
    aid = sc.disclosure.achievement_id
    handle = await start(env.client, worker.task_queue, sc, DEFAULT_POLICY)
    settled = Settled(handle)
    await until(
        handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None, settled=settled
    )
    for review in sc.reviews():
        await handle.execute_update(AchievementLifecycle.submit_review, review)
    st = await until(handle, lambda s: len(s.listings) == 2, settled=settled)
    assert st.stage is Stage.TRANSACTION
    second = st.listings[1]

    # A deal inside the publicity period is refused; after it, the deal stands.
    early = Deal(
        event_id="deal-early",
        exchange="jstec",
        listing_id=second.listing_id,
        buyer="Synthetic Buyer Ltd",
        contract_type=ContractType.TRANSFER,
        amount=Decimal("1000000.00"),
        instalments=2,
        closed_at=datetime.now(UTC),
    )
    await handle.signal(AchievementLifecycle.exchange_deal, early)
    await env.sleep(timedelta(days=16))
    st = await until(handle, lambda s: s.stage is Stage.TRANSACTION, settled=settled)
    assert st.deal is None
    deal = early.model_copy(update={"event_id": "deal-1"})
    await handle.signal(AchievementLifecycle.exchange_deal, deal)
    st = await until(handle, lambda s: s.contract is not None, settled=settled)
    assert [x.status for x in st.listings] == [ListingStatus.WITHDRAWN, ListingStatus.DEALT]

    for n, amount in ((1, "333333.33"), (2, "666666.67")):
        payment = Payment(
            event_id=f"pay-{n}",
            exchange="jstec",
            listing_id=second.listing_id,
            instalment=n,
            amount=Decimal(amount),
            costs=Decimal("0.01"),
            paid_at=datetime.now(UTC),
        )
        await handle.signal(AchievementLifecycle.exchange_payment, payment)
        await handle.signal(AchievementLifecycle.exchange_payment, payment)  # redelivered
        await env.sleep(timedelta(days=90))
    await until(handle, lambda s: s.stage is Stage.INCUBATION, settled=settled)

    now = datetime.now(UTC)
    await handle.signal(
        AchievementLifecycle.company_founded,
        CompanyFounded(
            event_id="co-1",
            company_name="Synthetic Spin-off Co (demo)",
            credit_code="91310000MA1FL8XQ3X",
            equity_share=Decimal("20.00"),
            valuation=Decimal("8000000.00"),
            founded_at=now,
        ),
    )
    await until(handle, lambda s: s.equity is not None, settled=settled)
    await handle.signal(
        AchievementLifecycle.incubator_admitted,
        IncubatorAdmission(event_id="inc-1", incubator="Synthetic Science Park", admitted_at=now),
    )
    for year in range(3):
        await env.sleep(timedelta(days=365))
        await handle.signal(
            AchievementLifecycle.incubation_milestone,
            IncubationMilestone(
                event_id=f"ms-{year}",
                kind=IncubationMilestoneKind.FINANCING_ROUND,
                description=f"Series {'ABC'[year]}",
                amount=Decimal("5000000.00"),
                reached_at=now,
            ),
        )
    await handle.signal(
        AchievementLifecycle.incubation_exit,
        IncubationExit(
            event_id="exit-1", kind=ExitKind.LISTED, detail="STAR market", exited_at=now
        ),
    )
    result = await handle.result()
    await record_history(handle, "five_year_full_path")

    assert result.final_stage is Stage.COMPLETED
    assert result.total_received == "1000000.00"
    assert result.report_number is not None
    stages = [e.stage for e in result.stages]
    assert stages == [
        Stage.DISCLOSURE,
        Stage.EVALUATION,
        Stage.TRANSACTION,
        Stage.INCUBATION,
        Stage.REPORTING,
        Stage.COMPLETED,
    ]
    # The whole life spans more than three simulated years.
    assert result.stages[-1].entered_at - result.stages[0].entered_at > timedelta(days=3 * 365)

    ex, reg = await stack.records("exchange"), await stack.records("registry")
    assert ex["listings"][aid] == {"sstec": 1, "jstec": 1}
    assert reg["achievements"][aid] == 1
    assert reg["contracts"][aid] == 1
    assert reg["equity"][aid] == 1

    rows = await db.fetch(
        "SELECT type, payload FROM lifecycle_events WHERE achievement_id = $1 ORDER BY seq", aid
    )
    types = [r["type"] for r in rows]
    assert types.count("payment_received") == 2  # the redelivered payments had no effect
    assert types.count("listing_withdrawn") == 1
    assert types[-1] == "completed"
    paid = [r["payload"] for r in rows if r["type"] == "payment_received"]
    for p in paid:
        d = p["distribution"]
        parts = Decimal(d["team_reward"]) + Decimal(d["tto_fund"]) + Decimal(d["institution"])
        assert parts == Decimal(d["net_income"]) == Decimal(p["amount"]) - Decimal(p["costs"])
    view = await db.fetchrow("SELECT stage FROM achievements WHERE achievement_id = $1", aid)
    assert view is not None and view["stage"] == "completed"


async def test_external_calls_run_on_their_systems_rate_limited_queues(
    time_skipping_env: WorkflowEnvironment, stack: Stack, task_queue: str
) -> None:
    settings = stack.settings.model_copy(
        update={"registry_rate_limit": 5.0, "exchange_rate_limit": 2.0}
    )
    group = build_worker(time_skipping_env.client, stack.deps, task_queue, settings)
    limits = {
        w.task_queue: w.config().get("max_task_queue_activities_per_second") for w in group.workers
    }
    assert limits == {
        task_queue: None,
        f"{task_queue}-registry": 5.0,
        f"{task_queue}-exchange": 2.0,
    }
    # Registers, then rests as a resource: a registry call, and no exchange call to wait on.
    sc = scenarios.resource_first(await today(time_skipping_env))
    async with group:
        handle = await start(time_skipping_env.client, task_queue, sc, DEFAULT_POLICY)
        await until(handle, lambda s: s.stage is Stage.RESOURCE)
        history = await handle.fetch_history()
        await finish(handle)
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    queues = {a.activity_type.name: a.task_queue.name for a in scheduled}
    assert queues["registry.register_achievement"] == f"{task_queue}-registry"
    # The projection appends run on the workflow's own queue, unthrottled: regular activities
    # (workflows/patches.py projection-as-activity), no local activity any more.
    assert queues["projection.record_events"] == task_queue
    markers = [e.marker_recorded_event_attributes.marker_name for e in history.events]
    assert "core_local_activity" not in markers
