"""Evaluation by an evaluation institution (plan item 6), instead of the expert panel.

The lifecycle asks the registry to have the institution evaluate the achievement, then waits
for the institution's signed report (relayed by the registry as a webhook) with the panel's
SLA: at the review SLA the institution is reminded through the registry, after the grace the
evaluation is escalated to an operator, who may route it while the report is still taken. The
report routes exactly as the panel's aggregate score does (workflows/rules.py route).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    from activities.registry import RegistryActivities
    from schemas.evaluation_institution import EvaluationRequested, InstitutionReport
    from schemas.events import EventType
    from schemas.lifecycle import LifecycleState, Stage
    from schemas.registry_api import EvaluationReminder, EvaluationRequest

# The lifecycle's own modules run in the sandbox (its protection of our code is kept).
from workflows.lifecycle.engine import LifecycleEngine

REPORT_SIGNAL = "evaluation_report"


def next_step(s: LifecycleState) -> str:
    """Who takes over when the institution is late or the registry refuses the request."""
    return f"an operator routes the achievement (POST /achievements/{s.achievement_id}/decision)"


def report_before_receipt(s: LifecycleState) -> bool:
    """A report while the request is still on its way (a fast relay can overtake the request's
    answer): held until the receipt says which request it must answer."""
    return (
        s.evaluator is not None
        and s.stage is Stage.EVALUATION
        and s.evaluation_request is None
        and s.held_report is None
        and not s.review_escalated
        and s.operator_decision is None
        and s.evaluation is None
    )


def report_refusal(s: LifecycleState, report: InstitutionReport) -> str | None:
    """Why an institution's report is not applied, or None when it is."""
    if report.achievement_id != s.achievement_id:
        return f"the report is of achievement {report.achievement_id}, not {s.achievement_id}"
    if s.evaluator is None:
        return "this achievement is evaluated by the expert panel, not an evaluation institution"
    asked = s.evaluation_request
    if asked is None:
        return f"no evaluation is requested of an evaluation institution (stage {s.stage.value})"
    if report.request_number != asked.request_number:
        return (
            f"the report answers request {report.request_number}, not this achievement's"
            f" request {asked.request_number}"
        )
    if report.evaluator != asked.evaluator:
        return f"the report is signed for {report.evaluator}, but {asked.evaluator} was asked"
    if s.institution_report is not None:
        return f"a report was already received ({s.institution_report.report_number})"
    if s.evaluation is not None:
        return (
            f"the evaluation is already decided ({s.evaluation.route.value},"
            f" by {s.evaluation.decided_by})"
        )
    if s.operator_decision is not None or s.stage is not Stage.EVALUATION:
        return f"the evaluation is already decided by an operator (stage {s.stage.value})"
    return None


def _evaluation_round(s: LifecycleState) -> int:
    """Which evaluation this is: an activated resource is evaluated again, under a new key."""
    return sum(1 for entry in s.timeline if entry.stage is Stage.EVALUATION)


class InstitutionEvaluation(LifecycleEngine):
    """The evaluation stage's institution path, and the signal that brings the report."""

    def by_institution(self) -> bool:
        """Whether an evaluation institution evaluates (gated: lifecycles recorded before the
        change have no evaluator, so they never reach the gate)."""
        return self.state.evaluator is not None and patches.evaluation_by_institution()

    async def _evaluate_by_institution(self) -> None:
        """Request, then wait with reminder and escalation; returns once the report or an
        operator's decision is in (the caller routes)."""
        s, policy = self.state, self.state.policy
        evaluator = s.evaluator
        assert evaluator is not None

        def decided() -> bool:
            return s.institution_report is not None or s.operator_decision is not None

        started = s.stage_since() or workflow.now()
        reminder_at = started + policy.review_sla
        escalation_at = reminder_at + policy.review_escalation_grace
        if s.evaluation_request is None and not s.review_escalated and not decided():
            refused = await self._request_evaluation(evaluator, reminder_at)
            if refused is not None:
                # The registry will never take this request: an operator decides at once.
                s.review_reminded = s.review_escalated = True
                self.record(
                    EventType.REVIEW_ESCALATED,
                    {**self._asked(), "reason": refused, "next_step": next_step(s)},
                    "registry",
                )
            if s.held_report is not None:
                # Now checked against the receipt (or refused: no request stands).
                held, s.held_report = s.held_report, None
                self._take_report(held)
        if not s.review_reminded:
            self.show_waiting(f"the report of evaluation institution {evaluator}", reminder_at)
            if not await self.wait_until(decided, until=reminder_at):
                s.review_reminded = True
                await self._remind(escalation_at)
        if not decided() and not s.review_escalated:
            self.show_waiting(
                f"the report of evaluation institution {evaluator} after a reminder",
                escalation_at,
            )
            if not await self.wait_until(decided, until=escalation_at):
                s.review_escalated = True
                payload = {**self._asked(), "next_step": next_step(s)}
                self.record(EventType.REVIEW_ESCALATED, payload)
        if not decided():
            self.show_waiting(
                f"an operator's routing decision (evaluation institution {evaluator} escalated;"
                " its report is still taken)"
            )
            await self.wait_until(decided)

    async def _request_evaluation(self, evaluator: str, due_at: datetime) -> str | None:
        """Ask through the registry; the reason it refused for good, or None when asked."""
        s = self.state
        d = s.disclosure
        try:
            receipt = await self.call_system(
                "registry",
                RegistryActivities.request_evaluation,
                [
                    self.idempotency_key(f"evaluation-request/{_evaluation_round(s)}"),
                    EvaluationRequest(
                        achievement_id=s.achievement_id,
                        registration_number=s.registration_number,
                        evaluator=evaluator,
                        title=d.title,
                        institution_code=d.institution.code,
                        field=d.field,
                        trl=d.trl,
                        report_due_at=due_at,
                    ),
                ],
            )
        except ActivityError as err:
            if not isinstance(err.cause, ApplicationError) or not err.cause.non_retryable:
                raise
            return f"the registry refused the evaluation request: {err.cause.message}"[:500]
        s.evaluation_request = EvaluationRequested(
            evaluator=receipt.evaluator,
            request_number=receipt.request_number,
            requested_at=receipt.requested_at,
        )
        self.record(
            EventType.EVALUATION_REQUESTED,
            {**self._asked(), "report_due_at": due_at.isoformat()},
            "registry",
        )
        return None

    async def _remind(self, due_at: datetime) -> None:
        """Remind the institution through the registry, and record whether it was told."""
        s = self.state
        payload: dict[str, Any] = {**self._asked(), "report_due_at": due_at.isoformat()}
        asked = s.evaluation_request
        payload["institution_told"] = False
        if asked is not None:
            try:
                await self.call_system(
                    "registry",
                    RegistryActivities.remind_evaluation,
                    [
                        self.idempotency_key(f"evaluation-reminder/{_evaluation_round(s)}"),
                        asked.request_number,
                        EvaluationReminder(achievement_id=s.achievement_id, report_due_at=due_at),
                    ],
                )
                payload["institution_told"] = True
            except ActivityError as err:
                if not isinstance(err.cause, ApplicationError) or not err.cause.non_retryable:
                    raise
                payload["refused"] = err.cause.message
        self.record(EventType.REVIEW_REMINDER, payload)

    def _asked(self) -> dict[str, Any]:
        asked = self.state.evaluation_request
        return {
            "by": "institution",
            "evaluator": self.state.evaluator,
            "request_number": asked.request_number if asked is not None else None,
        }

    @workflow.signal(
        name=REPORT_SIGNAL,
        description="An evaluation institution's signed report, relayed by the registry. One "
        "for another request, a second one, or one after the decision is recorded as refused.",
    )
    def evaluation_report(self, report: InstitutionReport) -> None:
        # Gated: a history that holds this signal from before the change replays as it ran.
        if not patches.evaluation_by_institution() or not self.first_delivery(report.event_id):
            return
        if report_before_receipt(self.state) and report.achievement_id == self.state.achievement_id:
            self.state.held_report = report
            workflow.logger.info("Evaluation report %s held for the receipt", report.event_id)
            return
        self._take_report(report)

    def _take_report(self, report: InstitutionReport) -> None:
        """Apply the report, or record it as refused with the reason."""
        s = self.state
        event = report.model_dump(mode="json")
        reason = report_refusal(s, report)
        if reason is not None:
            self.refuse(REPORT_SIGNAL, report.event_id, "registry", reason, event)
            return
        s.institution_report = report
        payload = {k: v for k, v in event.items() if k not in ("event_id", "achievement_id")}
        self.record(
            EventType.EVALUATION_REPORTED,
            {**payload, "mean": str(report.mean), "by": "institution"},
            f"evaluator:{report.evaluator}",
            at=report.reported_at,
        )
