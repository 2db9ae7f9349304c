"""A lifecycle's shape, read from its real history: the activities (and local activities),
signals, timers and updates it performed, in order, as the script of the bare floor
(bench/bare.py).

With `queues=True` an activity scheduled on another task queue than the workflow's is `r`
(a queue ending in `-registry`) or `x` (any other: the exchange's): the lifecycle's external
calls go through each system's own rate-limited queue, which the server dispatches through
matching, while an activity on the workflow's own queue may be handed back eagerly with the
workflow task's completion. The floor then schedules its no-ops on the same kind of queue.
On the workflow's own queue, an activity that is not a projection append (the fund's accrual)
is `a`: the floor runs it as a plain no-op, while its `A`s send the append's NOTIFY."""

from __future__ import annotations

from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

TOKENS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "A",
    EventType.EVENT_TYPE_TIMER_STARTED: "T",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "S",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "U",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "V",
}
NAMES = {
    "A": "activities",
    "L": "local activities",
    "T": "timers",
    "S": "signals",
    "U": "updates",
    "V": "search-attribute upserts",
}
# The lifecycle's projection appends (activities/projections.py): the floor's `A`.
APPEND_ACTIVITIES = frozenset({"projection.record_event", "projection.record_events"})
# How the SDK's core records a local activity's result in history.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def token(event: HistoryEvent, own_queue: str | None = None) -> str | None:
    """One history event's token; with `own_queue`, activities elsewhere are `r`/`x`."""
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and own_queue:
        scheduled = event.activity_task_scheduled_event_attributes
        queue = scheduled.task_queue.name
        if queue and queue != own_queue:
            return "r" if queue.endswith("-registry") else "x"
        if scheduled.activity_type.name not in APPEND_ACTIVITIES:
            return "a"
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        name = event.marker_recorded_event_attributes.marker_name
        return "L" if name == LOCAL_ACTIVITY_MARKER else None
    return TOKENS.get(event.event_type)


async def script_of(handle: WorkflowHandle[object, object], queues: bool = False) -> str:
    history = await handle.fetch_history()
    own = None
    if queues:
        own = history.events[0].workflow_execution_started_event_attributes.task_queue.name
    return "".join(t for e in history.events if (t := token(e, own)) is not None)


def counts(script: str) -> dict[str, int]:
    # The floor's W is a timer that fires; r/x are activities on another queue.
    c = Counter(script.replace("W", "T").translate(str.maketrans("rxa", "AAA")))
    return {NAMES[k]: c.get(k, 0) for k in "ALTSUV"}
