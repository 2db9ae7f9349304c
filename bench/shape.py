"""A lifecycle's shape, read from its real history: the activities, signals, timers and updates
it performed, in order, as the script of the bare floor (bench/bare.py)."""

from __future__ import annotations

from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

TOKENS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "A",
    EventType.EVENT_TYPE_TIMER_STARTED: "T",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "S",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "U",
}
NAMES = {"A": "activities", "T": "timers", "S": "signals", "U": "updates"}


async def script_of(handle: WorkflowHandle[object, object]) -> str:
    history = await handle.fetch_history()
    return "".join(TOKENS[e.event_type] for e in history.events if e.event_type in TOKENS)


def counts(script: str) -> dict[str, int]:
    c = Counter(script.replace("W", "T"))  # the floor's W is a timer that fires
    return {NAMES[k]: c.get(k, 0) for k in "ATSU"}
