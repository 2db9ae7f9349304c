"""Playing the parties: the engine's common path and the bare floor, driven the same way.

The institution starts each lifecycle directly with the client (like tests/helpers/lifecycle.py),
the experts submit their reviews as updates, and the exchange is played by signals sent with
the client (deal, then payment), not through the sandbox's test-mode endpoints. Both drivers
poll the workflow's query with the same back-off to know when to act.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from bench.bare import BareInput, BareWorkflow
from cli.samples import Scenario, scenario
from core.policy_book import DEMO_POLICY
from schemas.disclosure import FundingKind, FundingSource, TransformationMode
from schemas.evaluation import Review
from schemas.lifecycle import LifecycleResult, LifecycleState, Stage
from schemas.policy import Policy
from schemas.transaction import ContractType, Deal, Payment
from workflows.lifecycle import AchievementLifecycle
from workflows.start import start_lifecycle

T = TypeVar("T")
Lifecycle = WorkflowHandle[AchievementLifecycle, LifecycleResult]

# The demo policy without the publicity wait; the review SLA and payment grace pushed out to a
# day so that a loaded run never takes the reminder or overdue paths: the common path only.
BENCH_POLICY: Policy = DEMO_POLICY.model_copy(
    update={
        "version": "bench.1",
        "publicity_period": timedelta(0),
        "review_sla": timedelta(days=1),
        "review_escalation_grace": timedelta(days=1),
        "payment_grace": timedelta(days=1),
    }
)


async def poll(read: Callable[[], Awaitable[T]], check: Callable[[T], bool], limit: float) -> T:
    """Read until `check` holds: every 50 ms, backing off to 1 s (same for engine and floor)."""
    delay, deadline = 0.05, time.monotonic() + limit
    value: T | None = None
    while True:
        try:
            value = await read()
        except RPCError:
            # An overloaded worker may miss its poll for a while ("no poller seen"): read again.
            if time.monotonic() > deadline:
                raise
        else:
            if check(value):
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"state never matched: {value!r:.300}")
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 1.5)


def common_path(index: int, tag: str, today: date) -> Scenario:
    """disclosure → evaluation → transaction → one payment → reporting, one exchange."""
    sc = scenario(index, tag, today)
    disclosure = sc.disclosure.model_copy(
        update={
            "intended_modes": [TransformationMode.TRANSFER],
            "trl": 7,
            "funding": [FundingSource(kind=FundingKind.NATIONAL_FINANCE, project_code="NSFC-1")],
        }
    )
    return dataclasses.replace(
        sc,
        disclosure=disclosure,
        exchanges=["sstec"],
        needs_poc=False,
        instalments=1,
        contract_type=ContractType.TRANSFER,
    )


def parked(index: int, tag: str, today: date, deadline: date) -> Scenario:
    """A scientific resource: no intended modes, municipal funding, on the listing clock."""
    sc = scenario(index, tag, today)
    disclosure = sc.disclosure.model_copy(
        update={
            "intended_modes": [],
            "funding": [
                FundingSource(
                    kind=FundingKind.MUNICIPAL_FINANCE,
                    project_code=f"SH-{index}",
                    transformation_deadline=deadline,
                )
            ],
        }
    )
    return dataclasses.replace(sc, disclosure=disclosure, exchanges=["sstec"])


async def start(client: Client, task_queue: str, sc: Scenario, policy: Policy) -> Lifecycle:
    return await start_lifecycle(client, sc.lifecycle_input(policy), task_queue)


async def state(handle: Lifecycle) -> LifecycleState:
    return await handle.query(AchievementLifecycle.state_query)


async def drive_lifecycle(
    client: Client, task_queue: str, sc: Scenario, limit: float = 600.0
) -> tuple[Lifecycle, LifecycleResult]:
    handle = await start(client, task_queue, sc, BENCH_POLICY)
    aid = sc.disclosure.achievement_id
    await poll(lambda: state(handle), lambda s: s.stage is Stage.EVALUATION, limit)
    for review in sc.reviews():
        await _review(handle, review)
    st = await poll(lambda: state(handle), lambda s: bool(s.listings), limit)
    listing = st.listings[0]
    now = datetime.now(UTC)
    await handle.signal(
        AchievementLifecycle.exchange_deal,
        Deal(
            event_id=f"deal-{aid}",
            exchange=listing.exchange,
            listing_id=listing.listing_id,
            buyer="Synthetic Buyer Ltd (bench)",
            contract_type=sc.contract_type,
            amount=sc.deal_amount,
            instalments=1,
            closed_at=now,
        ),
    )
    await handle.signal(
        AchievementLifecycle.exchange_payment,
        Payment(
            event_id=f"pay-{aid}-1",
            exchange=listing.exchange,
            listing_id=listing.listing_id,
            instalment=1,
            amount=sc.deal_amount,
            costs=Decimal("0.00"),
            paid_at=now,
        ),
    )
    result = await asyncio.wait_for(handle.result(), limit)
    if result.final_stage is not Stage.COMPLETED:
        raise RuntimeError(f"{aid} ended {result.final_stage}: {result.reason}")
    return handle, result


async def _review(handle: Lifecycle, review: Review) -> None:
    """Submit a review; an update that timed out under load is sent again (and a repeat
    refused as 'already reviewed' means the first one went through)."""
    for _ in range(10):
        try:
            await handle.execute_update(AchievementLifecycle.submit_review, review)
            return
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            continue
        except WorkflowUpdateFailedError as err:
            if "already reviewed" in str(err.cause):
                return
            raise
    raise TimeoutError(f"review by {review.reviewer_id} never accepted")


Bare = WorkflowHandle[BareWorkflow, int]


async def progress(handle: Bare) -> dict[str, Any]:
    return await handle.query(BareWorkflow.progress)


async def drive_bare(
    client: Client, task_queue: str, wid: str, script: str, limit: float = 600.0
) -> Bare:
    """The floor, played like drive_lifecycle: all updates at the first update wait, all
    signals at the first signal wait, then wait for the end."""
    handle: Bare = await client.start_workflow(
        BareWorkflow.run, BareInput(script=script), id=wid, task_queue=task_queue
    )
    for token, send in (("U", _updates), ("S", _signals)):
        n = script.count(token)
        if n:
            first = f"{token}1"

            def waiting(p: dict[str, Any], first: str = first) -> bool:
                return bool(p["waiting"] == first)

            await poll(partial(progress, handle), waiting, limit)
            await send(handle, n)
    await asyncio.wait_for(handle.result(), limit)
    return handle


async def _updates(handle: Bare, n: int) -> None:
    for i in range(n):
        for _ in range(10):
            try:
                await handle.execute_update(BareWorkflow.bare_update, f"u{i}")
                break
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                continue


async def _signals(handle: Bare, n: int) -> None:
    for i in range(n):
        await handle.signal(BareWorkflow.bare_signal, f"s{i}")


async def bounded(n: int, concurrency: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> T:
        async with sem:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))
