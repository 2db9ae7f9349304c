"""Helpers for workflow tests: start a lifecycle and wait on its state (not on wall time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowHandle

from cli.samples import Scenario
from schemas.lifecycle import LifecycleInput, LifecycleResult, LifecycleState
from schemas.policy import Policy
from workflows.lifecycle import AchievementLifecycle

Handle = WorkflowHandle[AchievementLifecycle, LifecycleResult]


async def start(client: Client, task_queue: str, sc: Scenario, policy: Policy) -> Handle:
    return await client.start_workflow(
        AchievementLifecycle.run,
        LifecycleInput(
            disclosure=sc.disclosure,
            policy=policy,
            disclosed_at=datetime.now(UTC),
            reviewers=sc.reviewers,
            exchanges=sc.exchanges,
            asking_price=sc.asking_price,
            pricing=sc.pricing,
        ),
        id=f"achievement-{sc.disclosure.achievement_id}",
        task_queue=task_queue,
    )


async def state(handle: Handle) -> LifecycleState:
    return await handle.query(AchievementLifecycle.state_query)


async def until(
    handle: Handle, check: Callable[[LifecycleState], bool], attempts: int = 200
) -> LifecycleState:
    """Poll the query until `check` holds; fail with the last state seen."""
    current = await state(handle)
    for _ in range(attempts):
        if check(current):
            return current
        await asyncio.sleep(0.05)
        current = await state(handle)
    raise AssertionError(f"state never matched; last: stage={current.stage} {current.waiting}")
