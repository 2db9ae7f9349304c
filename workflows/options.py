"""Timeouts and retry policies of every activity the workflows call, and the one way to call
the registry or the exchange."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches

T = TypeVar("T")
System = Literal["registry", "exchange"]

# Calls to the registry and exchange. An achievement lives for years, so an outage of the
# registry or exchange is waited out (retries every 5 minutes at most, visible as a pending
# activity in the UI) rather than failing the lifecycle. Errors that can never succeed are
# raised non-retryable by the clients (activities/http_errors.py) and end the retries at once.
EXTERNAL_TIMEOUT = timedelta(seconds=30)
EXTERNAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)

# Appending to PostgreSQL: short, idempotent, retried until the database is back.
PROJECTION_TIMEOUT = timedelta(seconds=15)
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)


def system_queue(system: System) -> str | None:
    """The task queue of one external system's activities.

    Each system has its own queue so the server enforces that system's rate limit across all
    workers (`max_task_queue_activities_per_second`). Lifecycles recorded before the split keep
    running their calls on the workflow's own queue (None), hence the patch gate.
    """
    if patches.per_system_task_queues():
        return f"{workflow.info().task_queue}-{system}"
    return None


async def call_system(
    system: System,
    activity: Callable[..., Awaitable[T]],
    args: list[Any],
    details: str | None = None,
) -> T:
    """Call the registry or exchange: retried through outages, on the system's own queue.

    The UI's current details name the call while it runs (`details`, or a plain line): an
    outage shows as this call and its retries under Pending Activities, never as blank or stale
    details. The caller shows its next wait when the call is done."""
    name = getattr(activity, "__name__", "call").replace("_", " ")
    workflow.set_current_details(
        details
        or f"Calling the {system} ({name}) since {workflow.now():%Y-%m-%d %H:%M} UTC; retries "
        "are shown under Pending Activities."
    )
    result: T = await workflow.execute_activity_method(
        activity,
        args=args,
        start_to_close_timeout=EXTERNAL_TIMEOUT,
        task_queue=system_queue(system),
        retry_policy=EXTERNAL_RETRY,
    )
    return result
