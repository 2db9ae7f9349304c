"""The lifecycle driver: start a lifecycle, read its state, wait on it, end it, and play the
exchange (deals and payments) the way its webhooks would, on any server and any worker.

Tests wait on the workflow's state (its query), never on wall time: `until` returns once the
state matches and every event so far has been handed to the projection.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from cli.samples import Scenario
from helpers.eventually import WITHIN_SECONDS, assert_eventually
from helpers.settled import Settled
from schemas.commands import Withdrawal
from schemas.lifecycle import LifecycleResult, LifecycleState, Stage
from schemas.policy import Policy
from schemas.transaction import ContractType, Deal, Payment
from workflows.lifecycle import AchievementLifecycle
from workflows.start import start_lifecycle

Handle = WorkflowHandle[AchievementLifecycle, LifecycleResult]

# Committed histories of real runs, replayed by tests/test_replay.py.
HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def start(client: Client, task_queue: str, sc: Scenario, policy: Policy) -> Handle:
    """Start the scenario's lifecycle the way the gateway does (workflows.start)."""
    return await start_lifecycle(client, sc.lifecycle_input(policy), task_queue)


# A query is answered in milliseconds; one that is not within this will never be (below).
QUERY_TIMEOUT = timedelta(seconds=2)


async def state(handle: Handle) -> LifecycleState:
    return await handle.query(AchievementLifecycle.state_query, rpc_timeout=QUERY_TIMEOUT)


async def until(
    handle: Handle,
    check: Callable[[LifecycleState], bool],
    *,
    within: float = WITHIN_SECONDS,
    what: str = "the lifecycle's state to match",
    settled: Settled | None = None,
) -> LifecycleState:
    """The state once `check` holds and every event is recorded; fail with the last state.

    An empty outbox means the projection has every event so far, so tests may read it next
    (PostgreSQL on the real stack, the canned projection's memory in the fast layer).
    With `settled` (following this handle's history), the state is queried only when the
    workflow has settled after a change, instead of every few milliseconds.
    """
    if settled is not None:
        return await _until_settled(handle, check, settled, within, what)

    async def matched() -> LifecycleState:
        try:
            current = await state(handle)
        except RPCError as err:
            # A query that reaches a run just as it continues as new is never answered (the
            # time-skipping server leaves it to time out); the next one reaches the new run.
            if err.status not in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
                raise
            raise AssertionError(f"the query was not answered: {err}") from err
        assert check(current) and not current.outbox, _unmatched(current)
        return current

    return await assert_eventually(matched, within=within, what=what)


def _unmatched(current: LifecycleState) -> str:
    return (
        f"stage={current.stage.value} waiting={current.waiting} "
        f"unrecorded events={len(current.outbox)}"
    )


async def _until_settled(
    handle: Handle,
    check: Callable[[LifecycleState], bool],
    settled: Settled,
    within: float,
    what: str,
) -> LifecycleState:
    seen, last = 0, "never settled"
    try:
        async with asyncio.timeout(within):
            while True:
                seen = await settled.wait(after=seen)
                current = await state(handle)
                if check(current) and not current.outbox:
                    return current
                last = _unmatched(current)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {within:g}s; last: {last}") from None


async def to_transaction(handle: Handle, sc: Scenario) -> LifecycleState:
    """Through evaluation with the panel's reviews, to every listing made."""
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    for review in sc.reviews():
        await handle.execute_update(AchievementLifecycle.submit_review, review)
    return await until(
        handle, lambda s: len(s.listings) == len(sc.exchanges), what="a listing on each exchange"
    )


async def rejection(call: Awaitable[object]) -> str:
    """The validator's message of an update that must be rejected."""
    try:
        await call
    except WorkflowUpdateFailedError as err:
        return str(err.cause)
    raise AssertionError("the update was accepted")


async def finish(handle: Handle) -> LifecycleResult:
    """End a test's lifecycle cleanly (withdrawal, report, completion).

    Terminating instead would leave in-flight activities behind, and the time-skipping server
    stops skipping time while any is outstanding, stalling the next test.
    """
    await handle.execute_update(
        AchievementLifecycle.withdraw, Withdrawal(reason="test over", requested_by="test")
    )
    return await handle.result()


async def end_if_open(handle: Handle, within: float = 10.0) -> None:
    """After a test, however it went: withdraw the lifecycle if it is still open and wait for
    its end, or, if it cannot end (stuck, failing), terminate it.

    Withdrawing first because terminating a lifecycle with an activity in flight leaves the
    time-skipping server counting that activity for good, and it stops skipping time.
    """
    try:
        async with asyncio.timeout(within):
            try:
                await finish(handle)
            except WorkflowUpdateFailedError:  # already ending: let it
                await handle.result()
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:  # not closed already
            raise
    except (TimeoutError, WorkflowFailureError):
        await handle.terminate("test over: it could not end by itself")


async def today(env: WorkflowEnvironment) -> date:
    """The server's date: a shared time-skipping server may be years ahead of the wall clock,
    and scenarios count their deadlines from it."""
    return (await env.get_current_time()).date()


async def sleep_past(env: WorkflowEnvironment, day: date) -> None:
    """Skip time until the server's clock is past `day` (a single skip may stop short)."""
    for _ in range(20):
        now = await env.get_current_time()
        if now.date() > day:
            return
        await env.sleep(datetime.combine(day, datetime.min.time(), UTC) - now + timedelta(days=1))
    raise AssertionError(f"the test server's clock never passed {day}")


def deal(
    listing_id: str,
    exchange: str,
    instalments: int,
    event_id: str = "deal",
    amount: str = "1200000.00",
) -> Deal:
    """A deal as the exchange's webhook reports it (`event_id` deduplicates redeliveries)."""
    return Deal(
        event_id=event_id,
        exchange=exchange,
        listing_id=listing_id,
        buyer="Buyer Ltd",
        contract_type=ContractType.LICENCE,
        amount=Decimal(amount),
        instalments=instalments,
        closed_at=datetime.now(UTC),
    )


def payment(of: Deal, n: int, amount: str) -> Payment:
    """Instalment `n` of a deal, as the exchange's webhook reports it."""
    return Payment(
        event_id=f"pay-{n}",
        exchange=of.exchange,
        listing_id=of.listing_id,
        instalment=n,
        amount=Decimal(amount),
        paid_at=datetime.now(UTC),
    )


async def record_history(handle: Handle, name: str) -> None:
    """With ACHIEVEMENTS_RECORD_HISTORIES=1, keep this run's history for the replay test."""
    if os.environ.get("ACHIEVEMENTS_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    record = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
    (HISTORIES / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")


async def event_types(db: asyncpg.Pool, achievement_id: str) -> list[str]:
    """The types of the events PostgreSQL holds for an achievement, in order (the real stack)."""
    rows = await db.fetch(
        "SELECT type FROM lifecycle_events WHERE achievement_id = $1 ORDER BY seq", achievement_id
    )
    return [r["type"] for r in rows]
