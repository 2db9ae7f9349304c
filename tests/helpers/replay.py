"""Replay a history a test has just produced, and say enough when it does not replay.

A live history that does not replay is a lifecycle that would be stuck the next time a worker
rebuilds it from history (after an eviction or a restart). The failure names only the command
that did not match, so the assertion also keeps the history: its events in one line each
(`tests/.failed-histories/`, git-ignored) and its shape in the message, where CI's log shows it.
"""

from __future__ import annotations

import time
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from workers.worker import WORKFLOWS

FAILED = Path(__file__).resolve().parent.parent / ".failed-histories"


def _token(event: HistoryEvent) -> str:
    """One event as a short token: `12:LA` (a local activity marker), `15:A:fund.accrue`, ..."""
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    short = {
        "WORKFLOW_TASK_SCHEDULED": "ws",
        "WORKFLOW_TASK_STARTED": "wst",
        "WORKFLOW_TASK_COMPLETED": "wc",
        "WORKFLOW_TASK_FAILED": "WF!",
        "WORKFLOW_TASK_TIMED_OUT": "WT!",
        "ACTIVITY_TASK_STARTED": "as",
        "ACTIVITY_TASK_COMPLETED": "ac",
        "TIMER_STARTED": "T",
        "TIMER_FIRED": "Tf",
        "TIMER_CANCELED": "Tc",
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": "sa",
    }.get(name, name)
    if event.HasField("marker_recorded_event_attributes"):
        marker = event.marker_recorded_event_attributes.marker_name
        short = {"core_local_activity": "LA", "core_patch": "P"}.get(marker, marker)
    elif event.HasField("activity_task_scheduled_event_attributes"):
        short = "A:" + event.activity_task_scheduled_event_attributes.activity_type.name
    elif event.HasField("workflow_execution_signaled_event_attributes"):
        short = "S:" + event.workflow_execution_signaled_event_attributes.signal_name
    elif event.HasField("workflow_execution_update_accepted_event_attributes"):
        accepted = event.workflow_execution_update_accepted_event_attributes
        short = "U:" + accepted.accepted_request.input.name
    return f"{event.event_id}:{short}"


def shape(history: WorkflowHistory) -> str:
    return " ".join(_token(e) for e in history.events)


async def assert_replays(history: WorkflowHistory, converter: DataConverter, name: str) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return
    FAILED.mkdir(exist_ok=True)
    kept = FAILED / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    kept.write_text(history.to_json(), encoding="utf-8")
    raise AssertionError(
        f"{name} does not replay: {result.replay_failure}\nhistory kept in {kept}\n"
        f"shape: {shape(history)}"
    )
