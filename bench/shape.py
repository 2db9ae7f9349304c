"""A lifecycle's shape, read from its real history: the activities (and local activities),
signals, timers and updates it performed, in order, as the script of the bare floor
(bench/bare.py)."""

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
}
NAMES = {
    "A": "activities",
    "L": "local activities",
    "T": "timers",
    "S": "signals",
    "U": "updates",
}
# How the SDK's core records a local activity's result in history.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def token(event: HistoryEvent) -> str | None:
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        name = event.marker_recorded_event_attributes.marker_name
        return "L" if name == LOCAL_ACTIVITY_MARKER else None
    return TOKENS.get(event.event_type)


async def script_of(handle: WorkflowHandle[object, object]) -> str:
    history = await handle.fetch_history()
    return "".join(t for e in history.events if (t := token(e)) is not None)


def counts(script: str) -> dict[str, int]:
    c = Counter(script.replace("W", "T"))  # the floor's W is a timer that fires
    return {NAMES[k]: c.get(k, 0) for k in "ALTSU"}
