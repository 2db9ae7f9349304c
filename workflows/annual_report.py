"""AnnualReport: each institution's annual report, built from recorded events and submitted.

Started each January by the `annual-report` Schedule (workers/schedules.py) for the year
before, or on demand for a given year and institution. Years run on the jurisdiction's calendar
(China Standard Time for Shanghai), as do the report's figures (activities/reports.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    from activities.registry import RegistryActivities
    from activities.reports import ReportActivities
    from schemas.registry_api import AnnualReportRequest
    from schemas.report import (
        AnnualReportInput,
        AnnualReportResult,
        InstitutionAnnualReport,
        SubmittedReport,
        previous_year,
        report_zone,
    )
    from workflows.options import call_system

# A year of events of one institution is a few aggregates over an index: seconds, but let a
# loaded database take its time before retrying.
REPORT_TIMEOUT = timedelta(minutes=10)
REPORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
# Institutions reported at once: bounds the load on PostgreSQL and the registry.
BATCH = 10


@workflow.defn(name="AnnualReport")
class AnnualReport:
    @workflow.run
    async def run(self, input: AnnualReportInput) -> AnnualReportResult:
        now = workflow.now()
        year = input.year if input.year is not None else _year_before(now, input.jurisdiction)
        if input.institution_code is not None:
            codes = [input.institution_code]
        else:
            codes = await workflow.execute_activity_method(
                ReportActivities.active_institutions,
                args=[year, input.jurisdiction],
                start_to_close_timeout=REPORT_TIMEOUT,
                retry_policy=REPORT_RETRY,
            )
        submitted: list[SubmittedReport] = []
        for start in range(0, len(codes), BATCH):
            batch = codes[start : start + BATCH]
            submitted += await asyncio.gather(
                *(self._report(code, year, input.jurisdiction) for code in batch)
            )
        workflow.logger.info("Annual reports %s submitted: %d", year, len(submitted))
        return AnnualReportResult(year=year, submitted=submitted)

    async def _report(self, institution: str, year: int, jurisdiction: str) -> SubmittedReport:
        report: InstitutionAnnualReport = await workflow.execute_activity_method(
            ReportActivities.build_institution_report,
            args=[institution, year, workflow.now(), jurisdiction],
            start_to_close_timeout=REPORT_TIMEOUT,
            retry_policy=REPORT_RETRY,
        )
        receipt = await call_system(
            "registry",
            RegistryActivities.submit_annual_report,
            [
                # Stable across retries of this run; a new run (next year) has a new id.
                # Retries of this run file once; a later run (a correction) files again.
                f"{workflow.info().workflow_id}/annual-report/{institution}/{year}",
                AnnualReportRequest(
                    institution_code=institution,
                    year=year,
                    report=report.model_dump(mode="json"),
                ),
            ],
        )
        return SubmittedReport(
            institution_code=institution,
            receipt_number=receipt.receipt_number,
            cash_received=report.income.cash_received,
        )


def _year_before(now: datetime, jurisdiction: str) -> int:
    """The year before the start, on the jurisdiction's calendar. It differs from UTC's only in
    the hours between midnight there and midnight UTC on 1 January: gated only there."""
    local = previous_year(now, report_zone(jurisdiction))
    if local != now.year - 1 and patches.report_year_on_jurisdiction_calendar():
        return local
    return now.year - 1
