"""Playing the parties: the engine's common path and the bare floor, driven the same way.

The institution starts each lifecycle directly with the client (like tests/helpers/lifecycle.py),
the experts submit their reviews as updates, and the exchange is played by signals sent with
the client (deal, then payment), not through the sandbox's test-mode endpoints. The parties
react to the lifecycle's own events, as real ones do: the append's NOTIFY (bench/events.py),
heard on one LISTEN connection. The experts review once the lifecycle has entered evaluation;
the exchange closes the deal once the listing is recorded, on the listing it holds itself
(`ListingOf`). The floor sends the same NOTIFYs from its appends, and its driver acts on them
the same way. `poll` (of a query) is left for the benchmarks that time a query itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from bench import events
from bench.bare import BareWorkflow
from bench.events import Listener
from bench.floor_input import BareInput, append_labels
from cli.samples import Scenario, scenario
from core.policy_book import DEMO_POLICY
from sandboxes.exchange import SCHEMA as EXCHANGE_SCHEMA
from schemas.disclosure import FundingKind, FundingSource, TransformationMode
from schemas.evaluation import Review
from schemas.events import EventType
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


ListingOf = Callable[[str], Awaitable[tuple[str, str]]]
"""The exchange's own record of an achievement's listing: (exchange, listing id)."""


async def canned_listing(achievement_id: str) -> tuple[str, str]:
    """The listing bench/canned.py's exchange makes for the common path (no round: first)."""
    return "sstec", f"L-{achievement_id}-sstec"


def sandbox_listing(pool: asyncpg.Pool) -> ListingOf:
    """The exchange sandbox's own row: the exchange knows what it listed."""

    async def listing(achievement_id: str) -> tuple[str, str]:
        row = await pool.fetchrow(
            f"SELECT exchange, listing_id FROM {EXCHANGE_SCHEMA}.listings"
            " WHERE achievement_id = $1 ORDER BY listed_at DESC LIMIT 1",
            achievement_id,
        )
        if row is None:
            raise RuntimeError(f"the exchange holds no listing of {achievement_id}")
        return str(row["exchange"]), str(row["listing_id"])

    return listing


async def drive_lifecycle(
    client: Client,
    task_queue: str,
    sc: Scenario,
    listener: Listener,
    listing_of: ListingOf,
    limit: float = 600.0,
) -> tuple[Lifecycle, LifecycleResult]:
    """One common-path lifecycle, its parties reacting to its events (no query)."""
    handle = await start(client, task_queue, sc, BENCH_POLICY)
    aid, wid = sc.disclosure.achievement_id, handle.id
    try:
        await listener.wait(wid, events.stage_key(Stage.EVALUATION.value), limit)
        for review in sc.reviews():
            await _review(handle, review)
        await listener.wait(wid, events.type_key(EventType.LISTED.value), limit)
    finally:
        listener.forget(wid)
    exchange, listing_id = await listing_of(aid)
    now = datetime.now(UTC)
    await handle.signal(
        AchievementLifecycle.exchange_deal,
        Deal(
            event_id=f"deal-{aid}",
            exchange=exchange,
            listing_id=listing_id,
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
            exchange=exchange,
            listing_id=listing_id,
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
        except RPCError as err:
            await _task_failed(err)
        except WorkflowUpdateFailedError as err:
            if "already reviewed" in str(err.cause):
                return
            raise
    raise TimeoutError(f"review by {review.reviewer_id} never accepted")


async def _task_failed(err: RPCError) -> None:
    """An update refused because the workflow task failed (on a starved machine, the SDK's
    2 s deadlock detector): the server retries the task; send the update again shortly."""
    if err.status is not RPCStatusCode.FAILED_PRECONDITION:
        raise err
    await asyncio.sleep(0.5)


Bare = WorkflowHandle[BareWorkflow, int]


async def progress(handle: Bare) -> dict[str, Any]:
    return await handle.query(BareWorkflow.progress)


async def drive_bare(
    client: Client,
    task_queue: str,
    wid: str,
    script: str,
    listener: Listener,
    limit: float = 600.0,
    upserts: bool = False,
) -> Bare:
    """The floor, played like drive_lifecycle: all updates once the append before the first
    update wait is heard, all signals once the one before the first signal wait is, then wait
    for the end. `upserts`: the floor also makes the lifecycle's search-attribute upserts."""
    handle: Bare = await client.start_workflow(
        BareWorkflow.run,
        BareInput(script=script, notify=True, upserts=upserts),
        id=wid,
        task_queue=task_queue,
    )
    labels = set(append_labels(script).values())
    try:
        for token, send in (("U", _updates), ("S", _signals)):
            n = script.count(token)
            if n:
                if f"{token}1" in labels:
                    await listener.wait(wid, events.type_key(f"{token}1"), limit)
                await send(handle, n)
    finally:
        listener.forget(wid)
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
            except RPCError as err:
                await _task_failed(err)


async def _signals(handle: Bare, n: int) -> None:
    for i in range(n):
        await handle.signal(BareWorkflow.bare_signal, f"s{i}")


@dataclass(frozen=True)
class Timing:
    """One driven workflow: when it started (seconds after the batch began) and how long it
    took from its start request to its result."""

    workflow_id: str
    started_s: float
    seconds: float


async def drive_lifecycles(
    client: Client,
    task_queue: str,
    n: int,
    listener: Listener,
    listing_of: ListingOf,
    tag: str,
    concurrency: int | None = None,
    first: int = 0,
) -> list[Timing]:
    """Drive N common-path lifecycles on `task_queue`, event-driven, `concurrency` at a time
    (default: all at once); return each one's timing. Achievement ids are made from `tag` and
    the indices `first`..`first+n-1`, so use a fresh tag per batch on one server. The worker
    must serve the main queue and its `-registry`/`-exchange` queues; `listener` must hear the
    appends of the projection database the worker writes to (or its canned NOTIFYs)."""
    today = datetime.now(UTC).date()
    t0 = time.perf_counter()

    async def one(i: int) -> Timing:
        began = time.perf_counter()
        sc = common_path(first + i, tag, today)
        handle, _ = await drive_lifecycle(client, task_queue, sc, listener, listing_of)
        return Timing(handle.id, began - t0, time.perf_counter() - began)

    return await bounded(n, concurrency or max(n, 1), one)


async def bounded(n: int, concurrency: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> T:
        async with sem:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))
