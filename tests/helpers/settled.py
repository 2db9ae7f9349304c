"""Knowing when a workflow has settled from its history, so that a test queries its state only
then, instead of every few milliseconds.

A query costs the worker an activation in the sandbox and the whole state serialized, and the
client its decoding: about 4 ms of CPU in the test's own process (where the worker, the
sandboxes and the driver all run), most of it spent on states that cannot have changed. The
state only changes when a workflow task completes, and reading the history costs the worker
nothing. `Settled.wait` reads the new events (the history is short) until the workflow has
handled everything so far: no workflow task and no activity open.

(A long poll, `wait_new_event`, would save even the reads, but the time-skipping test server
does not answer one while the run is open.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from helpers.eventually import POLL_SECONDS

_TASK_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
_ACTIVITY_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


class Settled:
    """What one workflow run's history says so far: read on demand, never twice."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self._handle = handle
        self._task_open = False
        self._activities: set[int] = set()  # scheduled event ids not yet closed
        self.seen = 0  # the last event id read

    @property
    def settled(self) -> bool:
        return not (self._task_open or self._activities)

    async def wait(self, after: int) -> int:
        """Wait until an event after `after` has been written and the workflow has settled;
        return the last event id read. Unbounded: the caller bounds it."""
        while True:
            async for event in self._handle.fetch_history_events():
                if event.event_id > self.seen:
                    self._read(event)
            if self.seen > after and self.settled:
                return self.seen
            await asyncio.sleep(POLL_SECONDS)

    def _read(self, event: HistoryEvent) -> None:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            self._task_open = True
        elif kind in _TASK_CLOSED:
            self._task_open = False
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            self._activities.add(event.event_id)
        elif kind in _ACTIVITY_CLOSED:
            attributes = getattr(event, _ACTIVITY_CLOSED[kind])
            self._activities.discard(attributes.scheduled_event_id)
        self.seen = event.event_id
