"""Continue-as-new mid-payments keeps every field, on a dev server with a tiny history limit.

The time-skipping server cannot be configured to suggest continue-as-new, so this runs on
its own real dev server started with a low `limit.historyCount.suggestContinueAsNew`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import asyncpg
import pytest_asyncio
from conftest import PLAIN_CONVERTER, Stack, binary
from helpers import scenarios
from helpers.lifecycle import event_types, record_history, start, state, until
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from core.policy_book import DEMO_POLICY
from schemas.lifecycle import LifecycleState, Stage
from schemas.transaction import Bid, ContractType, Deal, Payment
from workers.worker import build_worker
from workflows import search_attributes
from workflows.lifecycle import AchievementLifecycle

INSTALMENTS = 12


def _paid_or_over(n: int, st: LifecycleState) -> bool:
    return len(st.payments) >= n or st.stage.is_final


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_history_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=PLAIN_CONVERTER,
        dev_server_existing_path=binary("temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=60",
        ],
    )
    yield env
    await env.shutdown()


async def test_continue_as_new_mid_payments_keeps_every_field(
    small_history_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool, task_queue: str
) -> None:
    client = small_history_env.client
    sc = scenarios.cooperative_development(datetime.now(UTC).date(), exchanges=["sstec", "jstec"])
    aid = sc.disclosure.achievement_id
    # No publicity period, so the deal can close at once on this real-time server.
    policy_used = DEMO_POLICY.model_copy(update={"publicity_period": timedelta(0)})
    async with build_worker(client, stack.deps, task_queue, stack.settings):
        handle = await start(client, task_queue, sc, policy_used)
        first_run = (await handle.describe()).run_id
        await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
        for review in sc.reviews():
            await handle.execute_update(AchievementLifecycle.submit_review, review)
        before = await until(handle, lambda s: len(s.listings) == 2)
        listing = before.listings[1]
        deal = Deal(
            event_id="deal",
            exchange="jstec",
            listing_id=listing.listing_id,
            buyer="Synthetic Buyer",
            contract_type=ContractType.DEVELOPMENT,
            amount=Decimal("1000000.00"),
            instalments=INSTALMENTS,
            closed_at=datetime.now(UTC),
        )
        await handle.signal(AchievementLifecycle.exchange_deal, deal)
        await until(handle, lambda s: s.contract is not None)
        for n in range(1, INSTALMENTS + 1):
            amount = Decimal("83333.33") if n < INSTALMENTS else Decimal("83333.37")
            payment = Payment(
                event_id=f"pay-{n}",
                exchange="jstec",
                listing_id=listing.listing_id,
                instalment=n,
                amount=amount,
                costs=Decimal("3.33"),
                paid_at=datetime.now(UTC),
            )
            await handle.signal(AchievementLifecycle.exchange_payment, payment)
            if n < INSTALMENTS:  # after the last one the lifecycle may already be over
                await handle.signal(AchievementLifecycle.exchange_payment, payment)  # redelivered
            await until(handle, partial(_paid_or_over, n))
        result = await handle.result()
        final = await state(handle)
        await record_history(handle, "after_continue_as_new_payments")

    assert result.final_stage is Stage.COMPLETED
    assert result.total_received == "1000000.00"
    # The lifecycle went through continue-as-new: the first run handed over to another.
    first_handle = client.get_workflow_handle(handle.id, run_id=first_run)
    first = await first_handle.describe()
    hist = await first_handle.fetch_history()
    sugg = [
        e.event_id
        for e in hist.events
        if e.workflow_task_started_event_attributes.suggest_continue_as_new
    ]
    assert first.status is WorkflowExecutionStatus.CONTINUED_AS_NEW, (len(hist.events), sugg)
    assert (await handle.describe()).run_id != first_run
    assert final.registration_number == before.registration_number
    assert final.policy == policy_used
    assert [r.reviewer_id for r in final.reviews] == sc.reviewers
    assert [x.listing_id for x in final.listings] == [x.listing_id for x in before.listings]
    assert [p.payment.instalment for p in final.payments] == list(range(1, INSTALMENTS + 1))
    assert final.timeline[0].stage is Stage.DISCLOSURE
    assert final.timeline[-1].stage is Stage.COMPLETED
    types = await event_types(db, aid)
    assert types.count("payment_received") == INSTALMENTS  # nothing lost, nothing twice
    assert types.count("disclosed") == 1 and types[-1] == "completed"


async def test_an_overdue_instalment_is_still_awaited_after_continue_as_new(
    small_history_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool, task_queue: str
) -> None:
    """A run continued while an instalment is overdue waits for it (it used to spin on the
    passed deadline). Here, not on the time-skipping server: that server's continue-as-new is
    not atomic with signals arriving meanwhile, and a test sending them across one there hangs
    now and then (sdk-java#1537)."""
    client = small_history_env.client
    sc = scenarios.cooperative_development(datetime.now(UTC).date())
    aid = sc.disclosure.achievement_id
    policy_used = DEMO_POLICY.model_copy(
        update={"publicity_period": timedelta(0), "payment_grace": timedelta(seconds=2)}
    )
    async with build_worker(client, stack.deps, task_queue, stack.settings):
        handle = await start(client, task_queue, sc, policy_used)
        await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
        for review in sc.reviews():
            await handle.execute_update(AchievementLifecycle.submit_review, review)
        listing = (await until(handle, lambda s: len(s.listings) >= 1)).listings[0]
        deal = Deal(
            event_id="deal",
            exchange=listing.exchange,
            listing_id=listing.listing_id,
            buyer="Synthetic Buyer",
            contract_type=ContractType.DEVELOPMENT,
            amount=Decimal("1000.00"),
            instalments=1,
            closed_at=datetime.now(UTC),
        )
        await handle.signal(AchievementLifecycle.exchange_deal, deal)
        await until(handle, lambda s: s.overdue_instalments == [1], what="the overdue")
        overdue_run = (await handle.describe()).run_id
        # Bids grow the history until the server suggests continue-as-new mid-overdue-wait.
        for n in range(200):
            bid = Bid(
                event_id=f"bid-{n}",
                exchange=listing.exchange,
                listing_id=listing.listing_id,
                bidder="Late Bidder",
                amount=Decimal("1.00"),
                placed_at=datetime.now(UTC),
            )
            await handle.signal(AchievementLifecycle.exchange_bid, bid)
            if (await handle.describe()).run_id != overdue_run:
                break
        assert (await handle.describe()).run_id != overdue_run, "no continue-as-new"
        await until(
            handle, lambda s: s.waiting is not None and "overdue" in s.waiting.on, what="waiting"
        )
        payment = Payment(
            event_id="pay-1",
            exchange=listing.exchange,
            listing_id=listing.listing_id,
            instalment=1,
            amount=Decimal("1000.00"),
            paid_at=datetime.now(UTC),
        )
        await handle.signal(AchievementLifecycle.exchange_payment, payment)
        result = await handle.result()
    assert result.final_stage is Stage.COMPLETED and result.total_received == "1000.00"
    assert (await event_types(db, aid)).count("payment_overdue") == 1
