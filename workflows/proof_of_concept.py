"""Proof of concept as a child workflow: fund application, milestones, go/no-go (items 3, 9)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.registry import RegistryActivities
    from schemas.proof_of_concept import (
        GoNoGo,
        PocInput,
        PocMilestone,
        PocMilestoneReport,
        PocResult,
    )
    from schemas.registry_api import PocApplicationRequest
    from workflows.options import call_system


def _due_at(milestone: PocMilestone) -> datetime:
    # A milestone is due by the end of its due day (UTC).
    return datetime.combine(milestone.due, time.max, tzinfo=UTC)


@workflow.defn(name="ProofOfConcept")
class ProofOfConcept:
    @workflow.init
    def __init__(self, input: PocInput) -> None:
        self._input = input
        self._reports: dict[str, PocMilestoneReport] = {}
        self._seen: set[str] = set()
        self._decision: GoNoGo | None = None
        self._milestones: list[PocMilestone] = []

    @workflow.run
    async def run(self, input: PocInput) -> PocResult:
        application = await call_system(
            "registry",
            RegistryActivities.apply_for_poc,
            [
                f"{input.parent_workflow_id}/poc-application",
                PocApplicationRequest(
                    achievement_id=input.achievement_id,
                    title=input.title,
                    institution_code=input.institution_code,
                    trl=input.trl,
                    applied_on=workflow.now().date(),
                ),
            ],
        )
        self._milestones = list(input.milestones or application.milestones)
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
        self._reports.setdefault(report.milestone_id, report)

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
