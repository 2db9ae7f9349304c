"""Lifecycles read while they record their events still replay.

Operators, the gateway and the Temporal UI query a lifecycle whenever they like, also while it
appends its events. With the appends as local activities (temporalio 1.35.0), a query that
arrives while one runs can make the worker complete the workflow task with the append's marker
before the workflow has seen its result; the workflow then sees that result only with the next
task's signals, and its history no longer replays (about one lifecycle in ten here, "Missing
associated machine for LocalActivity"): the next worker to rebuild it from history would be
stuck. The appends are regular activities again (workflows/patches.py
`projection-as-activity`). This drives lifecycles through payments that arrive while each is
queried without pause, and replays every history.

Dev server and real workflows; the registry, exchange and projection are canned
(tests/helpers/canned_systems.py): what matters is the order of the workflow's commands.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from helpers import scenarios
from helpers.canned_systems import CannedSystems
from helpers.lifecycle import (
    Handle,
    deal,
    finish,
    payment,
    start,
    state,
    to_transaction,
    until,
)
from helpers.replay import assert_replays
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core.policy_book import DEMO_POLICY
from schemas.lifecycle import Stage
from workflows.lifecycle import AchievementLifecycle

LIFECYCLES = 16
POLICY = DEMO_POLICY.model_copy(
    update={
        "publicity_period": timedelta(0),
        "review_sla": timedelta(days=1),
        "review_escalation_grace": timedelta(days=1),
    }
)


async def _read_without_pause(handle: Handle, done: asyncio.Event) -> int:
    reads = 0
    while not done.is_set():
        try:
            await state(handle)
            reads += 1
        except RPCError:
            pass  # closing, or briefly too busy to answer: read again
        await asyncio.sleep(random.choice((0, 0.001, 0.005)))
    return reads


async def _paid_while_read(env: WorkflowEnvironment, task_queue: str, n: int) -> WorkflowHistory:
    sc = scenarios.transfer_then_company(datetime.now(UTC).date())
    handle = await start(env.client, task_queue, sc, POLICY)
    [listing] = (await to_transaction(handle, sc)).listings
    done = asyncio.Event()
    reader = asyncio.create_task(_read_without_pause(handle, done))
    try:
        closed = deal(listing.listing_id, listing.exchange, 3, event_id=f"deal-{n}")
        await handle.signal(AchievementLifecycle.exchange_deal, closed)
        for i, amount in enumerate(("400000.00", "400000.00", "400000.00"), start=1):
            await asyncio.sleep(random.choice((0, 0, 0.002, 0.01)))
            await handle.signal(AchievementLifecycle.exchange_payment, payment(closed, i, amount))
        await until(handle, lambda s: s.stage is Stage.INCUBATION)
        await finish(handle)
    finally:
        done.set()
        assert await reader > 0
    return await handle.fetch_history()


async def test_lifecycles_queried_while_they_record_payments_replay(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    systems = CannedSystems()
    async with systems.serving(dev_env.client, task_queue):
        histories = await asyncio.gather(
            *(_paid_while_read(dev_env, task_queue, n) for n in range(LIFECYCLES))
        )
    for n, history in enumerate(histories):
        await assert_replays(history, dev_env.client.data_converter, f"queried-lifecycle-{n}")
