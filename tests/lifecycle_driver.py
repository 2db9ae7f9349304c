"""Helpers for workflow tests: start a lifecycle and wait on its state (not on wall time)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from cli.samples import Scenario
from schemas.commands import Withdrawal
from schemas.lifecycle import LifecycleInput, LifecycleResult, LifecycleState
from schemas.policy import Policy
from workflows.lifecycle import AchievementLifecycle
from workflows.start import start_lifecycle

Handle = WorkflowHandle[AchievementLifecycle, LifecycleResult]


async def start(client: Client, task_queue: str, sc: Scenario, policy: Policy) -> Handle:
    return await start_lifecycle(
        client,
        LifecycleInput(
            disclosure=sc.disclosure,
            policy=policy,
            disclosed_at=datetime.now(UTC),
            reviewers=sc.reviewers,
            exchanges=sc.exchanges,
            asking_price=sc.asking_price,
            pricing=sc.pricing,
        ),
        task_queue,
    )


async def state(handle: Handle) -> LifecycleState:
    return await handle.query(AchievementLifecycle.state_query)


async def until(
    handle: Handle, check: Callable[[LifecycleState], bool], attempts: int = 1000
) -> LifecycleState:
    """Poll the query until `check` holds and every event is recorded; fail with the last state.

    An empty outbox means PostgreSQL has every event so far, so tests may read it next.
    """
    current = await state(handle)
    for _ in range(attempts):
        if check(current) and not current.outbox:
            return current
        await asyncio.sleep(0.01)  # a short poll: the time-skipping tests wait on it often
        current = await state(handle)
    raise AssertionError(f"state never matched; last: stage={current.stage} {current.waiting}")


HISTORIES = Path(__file__).parent / "histories"


async def record_history(handle: Handle, name: str) -> None:
    """With ACHIEVEMENTS_RECORD_HISTORIES=1, keep this run's history for the replay test."""
    if os.environ.get("ACHIEVEMENTS_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    record = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
    (HISTORIES / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")


async def event_types(db: asyncpg.Pool, achievement_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT type FROM lifecycle_events WHERE achievement_id = $1 ORDER BY seq", achievement_id
    )
    return [r["type"] for r in rows]


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
