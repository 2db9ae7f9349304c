"""Brokers' fees in the lifecycle on the time-skipping server with canned systems (the fast
layer of tests/test_brokered_deals.py, which runs the same rules on the real stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from helpers import scenarios
from helpers.canned_systems import CannedSystems
from helpers.lifecycle import deal, payment, start, to_transaction, today, until
from temporalio.testing import WorkflowEnvironment

from schemas.lifecycle import Stage
from schemas.policy import DEFAULT_POLICY
from schemas.transaction import Brokerage, TransferInstitution
from workers.worker import WorkerGroup
from workflows.lifecycle import AchievementLifecycle

AFTER_PUBLICITY = DEFAULT_POLICY.publicity_period + timedelta(minutes=1)
BROKER = TransferInstitution(code="SYN-TTI-9", name="Synthetic Transfer Co")


@pytest.fixture
def systems() -> CannedSystems:
    return CannedSystems()


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, systems: CannedSystems, task_queue: str
) -> AsyncIterator[WorkerGroup]:
    async with systems.serving(time_skipping_env.client, task_queue) as group:
        yield group


async def test_only_the_accepted_deals_fee_is_taken_and_a_redelivery_takes_nothing(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: CannedSystems
) -> None:
    sc = scenarios.cooperative_development(await today(time_skipping_env))
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    [listing] = (await to_transaction(handle, sc)).listings
    # A brokered deal during publicity is refused: its fee is never owed.
    early = deal(listing.listing_id, "sstec", instalments=2, event_id="deal-early").model_copy(
        update={"brokerage": Brokerage(transfer_institution=BROKER, service_fee=Decimal("9.99"))}
    )
    await handle.signal(AchievementLifecycle.exchange_deal, early)
    [refused] = await systems.recorded("deal_closed")
    assert refused["accepted"] is False and refused["brokerage"]["service_fee"] == "9.99"

    await time_skipping_env.sleep(AFTER_PUBLICITY)
    brokered = Brokerage(transfer_institution=BROKER, service_fee=Decimal("100.00"))
    won = deal(listing.listing_id, "sstec", instalments=2, event_id="deal-won").model_copy(
        update={"brokerage": brokered}
    )
    await handle.signal(AchievementLifecycle.exchange_deal, won)
    await until(handle, lambda s: s.contract is not None, what="the contract")
    first = payment(won, 1, "60.00")
    await handle.signal(AchievementLifecycle.exchange_payment, first)
    await handle.signal(AchievementLifecycle.exchange_payment, first)  # redelivered
    await handle.signal(AchievementLifecycle.exchange_payment, payment(won, 2, "1000.00"))
    assert (await handle.result()).final_stage is Stage.COMPLETED

    paid = [p["distribution"] for p in systems.payloads("payment_received")]
    assert [(d["service_fee"], d["net_income"]) for d in paid] == [
        ("60.00", "0.00"),
        ("40.00", "960.00"),
    ]
    # 70 % of 960.00 to the team, exactly; nothing of a net of 0.
    assert [d["team_reward"] for d in paid] == ["0.00", "672.00"]
