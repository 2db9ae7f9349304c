"""Proof of concept as a child workflow: fund application, milestones, go/no-go (items 3, 9).

What happens is recorded as it happens, by the parent: the child signals its parent
(`poc_progress`) with the grant, each milestone reported and each milestone overdue at its due
time, and the parent records each as a lifecycle event through its own outbox. Why not record
here: the parent's outbox appends in order and moves the achievement's current row with the
parent's state and stage, which the child has no part of; two writers of one achievement would
race for that row. A signal keeps one writer, and the parent deduplicates it by its
deterministic `event_id`, so a redelivery (or a replayed child) records nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    from activities.registry import RegistryActivities
    from schemas.proof_of_concept import (
        GoNoGo,
        PocInput,
        PocMilestone,
        PocMilestoneReport,
        PocProgress,
        PocProgressKind,
        PocResult,
    )
    from schemas.registry_api import PocApplicationRequest, PocApplicationResponse
    from workflows.options import call_system

# The parent's signal that takes what the child reports (AchievementLifecycle.poc_progress).
POC_PROGRESS_SIGNAL = "poc_progress"


def _due_at(milestone: PocMilestone) -> datetime:
    # When planned from the policy's offsets, at that moment; else by the end of its due day.
    return milestone.deadline


@workflow.defn(name="ProofOfConcept")
class ProofOfConcept:
    @workflow.init
    def __init__(self, input: PocInput) -> None:
        self._input = input
        self._reports: dict[str, PocMilestoneReport] = {}
        self._seen: set[str] = set()
        self._decision: GoNoGo | None = None
        self._milestones: list[PocMilestone] = []
        # Set once, before the application: whether this run tells its parent as it happens.
        self._reports_progress = False
        self._application: PocApplicationResponse | None = None
        self._to_parent: list[PocProgress] = []

    @workflow.run
    async def run(self, input: PocInput) -> PocResult:
        self._reports_progress = patches.poc_child_reports_progress()
        now = workflow.now()
        schedule: dict[str, Any] = {}
        if self._reports_progress and input.milestone_offsets:
            # The policy's schedule: the fund plans by it and the child waits by it.
            schedule = {"applied_at": now, "milestone_offsets": list(input.milestone_offsets)}
        request = PocApplicationRequest(
            achievement_id=input.achievement_id,
            title=input.title,
            institution_code=input.institution_code,
            trl=input.trl,
            applied_on=now.date(),
            **schedule,
        )
        application = await call_system(
            "registry",
            RegistryActivities.apply_for_poc,
            [f"{input.parent_workflow_id}/poc-application", request],
        )
        self._milestones = list(input.milestones or application.milestones)
        if self._reports_progress:
            self._application = application
            self._tell(PocProgressKind.FUNDED)
            for report in self._reports.values():  # reported before the application came back
                self._tell(PocProgressKind.MILESTONE_REPORTED, self._milestone(report), report)
            return await self._run_reporting_progress(application)
        overdue: list[str] = []
        for milestone in sorted(self._milestones, key=lambda m: m.due):
            if self._decision is not None:
                break  # the gate was decided early; later milestones are moot, not overdue
            workflow.set_current_details(
                f"Waiting for the fund to report milestone '{milestone.title}' "
                f"by {milestone.due.isoformat()}"
            )
            reported = await self._reported_in_time(milestone)
            if not reported and workflow.now() >= _due_at(milestone):
                overdue.append(milestone.milestone_id)
                workflow.logger.info("PoC milestone overdue: %s", milestone.milestone_id)
        workflow.set_current_details("Waiting for the go/no-go decision (technical and market)")
        await workflow.wait_condition(lambda: self._decision is not None)
        return self._result(application, overdue)

    async def _run_reporting_progress(self, application: PocApplicationResponse) -> PocResult:
        """The run as it happens: each overdue milestone is told at its due time."""
        overdue: list[str] = []
        for milestone in sorted(self._milestones, key=_due_at):
            if self._decision is not None:
                break  # the gate was decided early; later milestones are moot, not overdue
            due = _due_at(milestone)
            workflow.set_current_details(
                f"Waiting for the fund to report milestone '{milestone.title}' "
                f"by {due.strftime('%Y-%m-%d %H:%M:%S UTC')}"
            )
            mid = milestone.milestone_id

            def reported_or_decided(mid: str = mid) -> bool:
                return mid in self._reports or self._decision is not None

            await self._wait(reported_or_decided, due)
            if mid not in self._reports and workflow.now() >= due:
                overdue.append(mid)
                self._tell(PocProgressKind.MILESTONE_OVERDUE, milestone)
                workflow.logger.info("PoC milestone overdue: %s", mid)
        workflow.set_current_details("Waiting for the go/no-go decision (technical and market)")
        await self._wait(lambda: self._decision is not None)
        await self._tell_parent()  # what arrived with the decision
        assert self._decision is not None
        return self._result(application, overdue)

    def _result(self, application: PocApplicationResponse, overdue: list[str]) -> PocResult:
        assert self._decision is not None
        achieved = sum(1 for r in self._reports.values() if r.achieved)
        return PocResult(
            application_number=application.application_number,
            granted_amount=application.granted_amount,
            milestones_achieved=achieved,
            milestones_overdue=overdue,
            go=self._decision.go,
            reason=self._decision.reason
            or ("technically and commercially feasible" if self._decision.go else "not feasible"),
            decided_by=self._decision.decided_by,
            actor=self._decision.actor,
        )

    async def _wait(self, condition: Callable[[], bool], until: datetime | None = None) -> None:
        """Wait for `condition` until `until`, telling the parent whatever happens meanwhile."""
        while True:
            await self._tell_parent()
            now = workflow.now()
            if condition() or (until is not None and now >= until):
                return
            try:
                await workflow.wait_condition(
                    lambda: condition() or bool(self._to_parent),
                    timeout=None if until is None else until - now,
                    timeout_summary="proof-of-concept milestone due",
                )
            except TimeoutError:
                pass

    def _tell(
        self,
        kind: PocProgressKind,
        milestone: PocMilestone | None = None,
        report: PocMilestoneReport | None = None,
    ) -> None:
        """Queue what happened for the parent; the run loop sends it (handlers do no I/O)."""
        assert self._application is not None
        about = f"/{milestone.milestone_id}" if milestone is not None else ""
        self._to_parent.append(
            PocProgress(
                event_id=f"{workflow.info().workflow_id}/{kind.value}{about}",
                kind=kind,
                occurred_at=workflow.now(),
                application_number=self._application.application_number,
                granted_amount=self._application.granted_amount,
                milestone=milestone,
                report=report,
            )
        )

    async def _tell_parent(self) -> None:
        parent = workflow.get_external_workflow_handle(self._input.parent_workflow_id)
        while self._to_parent:
            # Awaited one by one: the parent has each before the next, and before the result.
            await parent.signal(POC_PROGRESS_SIGNAL, self._to_parent[0])
            del self._to_parent[0]

    async def _reported_in_time(self, milestone: PocMilestone) -> bool:
        remaining = _due_at(milestone) - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: milestone.milestone_id in self._reports or self._decision is not None,
                    timeout=remaining,
                )
            except TimeoutError:
                pass
        return milestone.milestone_id in self._reports

    @workflow.signal(description="The proof-of-concept fund reports a milestone.")
    def milestone_reported(self, report: PocMilestoneReport) -> None:
        if report.event_id in self._seen:
            return
        self._seen.add(report.event_id)
        known = {m.milestone_id for m in self._milestones}
        if known and report.milestone_id not in known:
            workflow.logger.warning("Ignoring unknown PoC milestone %s", report.milestone_id)
            return
        first = report.milestone_id not in self._reports
        self._reports.setdefault(report.milestone_id, report)
        if first and self._reports_progress and self._application is not None:
            self._tell(PocProgressKind.MILESTONE_REPORTED, self._milestone(report), report)

    def _milestone(self, report: PocMilestoneReport) -> PocMilestone | None:
        return next((m for m in self._milestones if m.milestone_id == report.milestone_id), None)

    @workflow.update(description="Record the go/no-go gate: both feasibilities are needed for go.")
    def go_no_go(self, decision: GoNoGo) -> bool:
        self._decision = decision
        return decision.go

    @go_no_go.validator
    def _validate_go_no_go(self, decision: GoNoGo) -> None:
        if self._decision is not None:
            raise ValueError("the go/no-go decision was already recorded")

    @workflow.query(description="Milestones, reports so far and the decision, if any.")
    def progress(self) -> dict[str, object]:
        return {
            "milestones": [m.model_dump(mode="json") for m in self._milestones],
            "reported": sorted(self._reports),
            "decided": self._decision is not None,
        }
