"""The `annual-report` Temporal Schedule, created or updated idempotently.

Each year on 10 January, 02:00 on the jurisdiction's calendar (China Standard Time for
Shanghai, not UTC), two hours after the year's books close (schemas/report.py books_close), it
starts AnnualReport for the year before (the workflow derives the year from its start time, on
the same calendar), for every institution with events in that report.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from schemas.jurisdiction import DEFAULT_JURISDICTION, JURISDICTIONS
from schemas.report import BOOKS_CLOSE_DAY, BOOKS_CLOSE_MONTH, AnnualReportInput
from workflows.annual_report import AnnualReport

log = structlog.get_logger(__name__)

ANNUAL_REPORT_SCHEDULE_ID = "annual-report"
# After the close at midnight: the projection has had two hours for the last events before it.
FILING_HOUR = 2


def annual_report_schedule(task_queue: str, jurisdiction: str = DEFAULT_JURISDICTION) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AnnualReport.run,
            AnnualReportInput(jurisdiction=jurisdiction),
            id="annual-report",  # the schedule appends the scheduled time
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    month=[ScheduleRange(BOOKS_CLOSE_MONTH)],
                    day_of_month=[ScheduleRange(BOOKS_CLOSE_DAY)],
                    hour=[ScheduleRange(FILING_HOUR)],
                )
            ],
            time_zone_name=JURISDICTIONS[jurisdiction].time_zone,
        ),
        # A server down over 10 January still reports once it is back, within the month.
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=30)
        ),
    )


async def ensure_annual_report_schedule(
    client: Client, task_queue: str, schedule_id: str = ANNUAL_REPORT_SCHEDULE_ID
) -> ScheduleHandle:
    """Create the schedule, or bring an existing one in line with this code (idempotent)."""
    schedule = annual_report_schedule(task_queue)
    try:
        handle = await client.create_schedule(schedule_id, schedule)
        log.info("schedule_created", schedule_id=schedule_id, task_queue=task_queue)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def replace(current: ScheduleUpdateInput) -> ScheduleUpdate:
            # Keep the live state: a schedule an operator paused stays paused.
            state = current.description.schedule.state
            return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=state))

        await handle.update(replace)
        log.info("schedule_updated", schedule_id=schedule_id, task_queue=task_queue)
    return handle
