"""The lifecycle's stages: what each one does, from the state alone, so any wait may end the run
with continue-as-new and the next run picks up at the same point. The rules they apply are in
workflows/rules.py; how they wait and record is the engine's (engine.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ChildWorkflowHandle

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    import workflows.rules as rules
    from activities.exchange import ExchangeActivities
    from activities.registry import RegistryActivities
    from schemas.commands import Withdrawal
    from schemas.evaluation import EvaluationOutcome, Recommendation
    from schemas.events import EventType
    from schemas.exchange_api import (
        SearchRequest,
    )
    from schemas.incubation import EquityRegistration
    from schemas.lifecycle import AttentionReason, Stage
    from schemas.proof_of_concept import PocInput, PocResult
    from schemas.registry_api import (
        LifecycleReportRequest,
        PocCancellationRequest,
        RegisterAchievementRequest,
        RegisterEquityRequest,
    )
    from workflows.ids import poc_child_id
    from workflows.proof_of_concept import ProofOfConcept

# The lifecycle's own modules run in the sandbox (its protection of our code is kept).
from workflows.lifecycle import details
from workflows.lifecycle.engine import Interrupt, WithdrawalRequested
from workflows.lifecycle.evaluation_institution import InstitutionEvaluation
from workflows.lifecycle.transaction import TransactionStage


class LifecycleStages(TransactionStage, InstitutionEvaluation):
    """One coroutine per stage, plus the cross-cutting moves (withdrawal, mandatory listing)."""

    async def _disclosure(self) -> None:
        s = self.state
        if s.registration_number is None:
            d = s.disclosure
            registration = await self.call_system(
                "registry",
                RegistryActivities.register_achievement,
                [
                    self.idempotency_key("register-achievement"),
                    RegisterAchievementRequest(
                        achievement_id=d.achievement_id,
                        title=d.title,
                        institution_code=d.institution.code,
                        field=d.field,
                        trl=d.trl,
                        ip_kinds=[a.kind for a in d.ip_assets],
                        synthetic=d.synthetic,
                    ),
                ],
            )
            s.registration_number = registration.registration_number
            self.record(
                EventType.REGISTERED,
                {"registration_number": registration.registration_number},
                source="registry",
            )
        if s.modes:
            self.enter(Stage.EVALUATION, "intended modes declared")
        else:
            self._hold_as_resource("no clear intention to transform")

    async def _resource(self) -> None:
        self.show_waiting(
            "an activation with transformation modes (dormant scientific resource)",
            next_action=details.next_action(
                self.state.achievement_id, details.ACTIVATE, who="an institution officer"
            ),
        )
        await self.wait_until(lambda: self.state.stage is not Stage.RESOURCE)

    async def _evaluation(self) -> None:
        s, policy = self.state, self.state.policy
        if s.search is None:
            s.search = await self.call_system(
                "exchange",
                ExchangeActivities.search,
                [
                    s.exchanges[0],
                    SearchRequest(field=s.disclosure.field, title=s.disclosure.title),
                ],
            )
            self.record(EventType.TECHNOLOGY_SEARCHED, s.search.model_dump(mode="json"), "exchange")
        if self.by_institution():
            # Plan item 6: an evaluation institution evaluates instead of the panel.
            await self._evaluate_by_institution()
            self._route()
            return

        def decided() -> bool:
            return len(s.reviews) >= policy.reviewer_count or s.operator_decision is not None

        started = s.stage_since() or workflow.now()
        reminder_at = started + policy.review_sla
        escalation_at = reminder_at + policy.review_escalation_grace
        reviews = (
            details.next_action(s.achievement_id, details.REVIEW, who="the assigned experts")
            + "; "
            + details.next_action(
                s.achievement_id, details.DECIDE, who="an institution officer may route it at once"
            )
        )
        if not s.review_reminded:
            self.show_waiting(
                f"{policy.reviewer_count - len(s.reviews)} expert review(s)",
                reminder_at,
                next_action=reviews,
            )
            if not await self.wait_until(decided, until=reminder_at):
                s.review_reminded = True
                self.record(EventType.REVIEW_REMINDER, self._missing())
        if not decided() and not s.review_escalated:
            self.show_waiting(
                f"the {policy.reviewer_count - len(s.reviews)} remaining expert review(s)"
                " after a reminder",
                escalation_at,
                next_action=reviews,
            )
            if not await self.wait_until(decided, until=escalation_at):
                s.review_escalated = True
                self.record(EventType.REVIEW_ESCALATED, self._missing())
        if not decided():
            # Overdue since the escalation: only a person moves it on now.
            self.show_waiting(
                "an operator's routing decision (review SLA escalated)",
                escalation_at,
                next_action=details.next_action(
                    s.achievement_id, details.DECIDE, who="an institution officer"
                ),
                attention=(AttentionReason.REVIEW_ESCALATED, escalation_at),
            )
            await self.wait_until(decided)
        self._route()

    async def _proof_of_concept(self) -> None:
        s = self.state
        if s.poc is None:
            self.show_waiting(
                "the proof-of-concept fund: milestones and the go/no-go gate",
                next_action=details.next_action(
                    s.achievement_id, details.GO_NO_GO, who="the fund, after the milestones"
                ),
            )
            child = await workflow.start_child_workflow(
                ProofOfConcept.run,
                PocInput(
                    achievement_id=s.achievement_id,
                    parent_workflow_id=s.workflow_id,
                    title=s.disclosure.title,
                    institution_code=s.disclosure.institution.code,
                    trl=s.disclosure.trl,
                    milestone_offsets=list(s.policy.poc_milestone_offsets),
                ),
                id=poc_child_id(s.workflow_id),
                static_summary=f"Proof of concept of {s.achievement_id}",
            )
            try:
                # No continue-as-new here: the child is bound to this run.
                await self.wait_until(child.done, can_continue_as_new=False)
            except Interrupt as interrupt:
                if child.done() or not patches.poc_progress_recorded():
                    child.cancel()
                    raise
                await self._cancel_poc(child, interrupt)
                raise
            result: PocResult = child.result()
            s.poc = result
            # What the child already reported as it happened (poc_progress) is not recorded again.
            for milestone_id in result.milestones_overdue:
                if f"overdue/{milestone_id}" in s.poc_recorded:
                    continue
                self.record(
                    EventType.POC_MILESTONE_OVERDUE, {"milestone_id": milestone_id}, "poc-fund"
                )
            if "funded" not in s.poc_recorded:
                self.record(
                    EventType.POC_FUNDED,
                    {
                        "application_number": result.application_number,
                        "granted_amount": str(result.granted_amount),
                    },
                    "registry",
                )
            self.record(
                EventType.POC_DECIDED,
                {"go": result.go, "reason": result.reason},
                f"poc-fund:{result.decided_by}" if result.decided_by else "operator",
                actor=result.actor,
            )
        if s.poc.go:
            self._enter_after_maturity("proof of concept passed")
        else:
            self._hold_as_resource(f"proof of concept: no-go ({s.poc.reason})")

    async def _cancel_poc(self, child: ChildWorkflowHandle[Any, PocResult], why: Interrupt) -> None:
        """A mandatory listing or a withdrawal ends a running proof of concept: the child is
        cancelled (and waited for, so whatever it reported is in), the fund is told through
        the registry that the application it granted is cancelled, and both are recorded."""
        s = self.state
        reason = self._poc_cancellation_reason(why)
        child.cancel()
        try:
            await child
        except ChildWorkflowError:
            pass  # cancelled, as asked
        payload: dict[str, Any] = {
            "reason": reason,
            "application_number": s.poc_application_number,
            "granted_amount": None if s.poc_granted_amount is None else str(s.poc_granted_amount),
            "fund_told": False,
        }
        if s.poc_application_number is not None:
            try:
                await self.call_system(
                    "registry",
                    RegistryActivities.cancel_poc_application,
                    [
                        self.idempotency_key("poc-cancellation"),
                        s.poc_application_number,
                        PocCancellationRequest(achievement_id=s.achievement_id, reason=reason),
                    ],
                )
                payload["fund_told"] = True
            except ActivityError as err:
                # The registry refused for good: record it for an operator, go on with the
                # listing or withdrawal that cancelled it.
                if not isinstance(err.cause, ApplicationError) or not err.cause.non_retryable:
                    raise
                payload["refused"] = err.cause.message
        self.record(EventType.POC_CANCELLED, payload, "workflow")

    def _poc_cancellation_reason(self, why: Interrupt) -> str:
        w = self.state.withdrawal
        if isinstance(why, WithdrawalRequested) and w is not None:
            return f"{'abandoned' if w.abandon else 'withdrawn'}: {w.reason}"[:500]
        return "mandatory listing: municipal deadline passed (item 8)"

    async def _incubation(self) -> None:
        s = self.state
        if s.company is None:
            self.show_waiting(
                "the company to be founded",
                next_action=details.next_action(
                    s.achievement_id, details.SYSTEM_EVENT, who="the incubator's webhook"
                ),
            )
            await self.wait_until(lambda: s.company is not None)
        assert s.company is not None
        if s.equity is None:
            c = s.company
            state_owned = s.disclosure.institution.state_owned
            # Item 3: the team's part of the equity follows ownership, as income does; gated
            # only where ownership gives the team a part, so other lifecycles replay unchanged.
            team_share: Decimal | None = None
            # Items 2 and 3: the team's reward out of the institution's part, at least the
            # statutory floor; decided at run start (patches.RUN_START_GATES).
            reward: rules.EquityReward | None = None
            if patches.team_equity_reward():
                reward = rules.equity_reward(s, c.equity_share, c.founded_at)
                team_share = reward.team
            elif (
                rules.institution_part(s, c.founded_at) != 1 and patches.equity_follows_ownership()
            ):
                team_share = rules.equity_shares(s, c.equity_share, c.founded_at)[1]
            response = await self.call_system(
                "registry",
                RegistryActivities.register_equity,
                [
                    self.idempotency_key("register-equity"),
                    RegisterEquityRequest(
                        achievement_id=s.achievement_id,
                        company_name=c.company_name,
                        credit_code=c.credit_code,
                        equity_share=c.equity_share,
                        valuation=c.valuation,
                        state_owned=state_owned,
                        team_equity_share=team_share,
                    ),
                ],
            )
            s.equity = EquityRegistration(
                equity_certificate=response.equity_certificate,
                state_owned_equity=response.state_owned_equity,
                registered_at=response.registered_at,
                team_equity_share=team_share,
            )
            payload: dict[str, Any] = {
                "equity_certificate": response.equity_certificate,
                # Item 2: state-owned equity from achievements is managed by category.
                "state_owned_equity": response.state_owned_equity,
                "categorized_management": response.state_owned_equity,
                "equity_share": str(c.equity_share),
                "valuation": str(c.valuation),
            }
            if team_share is not None:
                payload["team_equity_share"] = str(team_share)
                payload["institution_equity_share"] = str(c.equity_share - team_share)
            if reward is not None:
                payload["team_owned_equity_share"] = str(reward.team_owned)
                payload["team_reward_equity_share"] = str(reward.team_reward)
                payload["team_reward_rate"] = str(reward.rate)
                payload["registered_at"] = response.registered_at.isoformat()
            self.record(EventType.EQUITY_REGISTERED, payload, source="registry")
        if s.incubation_exit is None:
            self.show_waiting(
                "incubation milestones and the exit",
                next_action=details.next_action(
                    s.achievement_id, details.SYSTEM_EVENT, who="the incubator's webhook"
                ),
            )
            await self.wait_until(lambda: s.incubation_exit is not None)
        self.enter(
            Stage.REPORTING, f"incubation exit: {s.incubation_exit and s.incubation_exit.kind}"
        )

    async def _reporting(self) -> None:
        s = self.state
        final = Stage.COMPLETED
        if s.withdrawal is not None:
            final = Stage.ABANDONED if s.withdrawal.abandon else Stage.WITHDRAWN
        if s.report_number is None:
            receipt = await self.call_system(
                "registry",
                RegistryActivities.submit_lifecycle_report,
                [
                    self.idempotency_key("lifecycle-report"),
                    LifecycleReportRequest(
                        achievement_id=s.achievement_id,
                        registration_number=s.registration_number,
                        final_stage=final.value,
                        summary=rules.result(self.state).model_dump(mode="json"),
                    ),
                ],
            )
            s.report_number = receipt.receipt_number
            self.record(
                EventType.REPORT_SUBMITTED, {"report_number": receipt.receipt_number}, "registry"
            )
        self.enter(final, s.outcome_reason or "lifecycle complete")
        self.record(
            {
                Stage.COMPLETED: EventType.COMPLETED,
                Stage.WITHDRAWN: EventType.WITHDRAWN,
                Stage.ABANDONED: EventType.ABANDONED,
            }[final],
            {"reason": s.outcome_reason} if s.outcome_reason else {},
            actor=s.withdrawal.actor if s.withdrawal is not None else None,
        )
        self.show_waiting("nothing: the lifecycle is over")

    # ------------------------------------------------------------------ cross-cutting

    async def _wind_down(self) -> None:
        s = self.state
        w = s.withdrawal
        assert w is not None
        s.outcome_reason = w.reason
        await self._withdraw_listings(f"achievement withdrawn: {w.reason}", keep=None)
        self.enter(Stage.REPORTING, f"{'abandoned' if w.abandon else 'withdrawn'}: {w.reason}")

    async def _trigger_mandatory_listing(self) -> None:
        s = self.state
        if rules.current_listings(s):
            # After expired voluntary listings: one mandatory listing on every exchange.
            self._new_listing_round()
            s.relisted = 0
        s.mandatory_listing_triggered = True
        self.record(
            EventType.MANDATORY_LISTING_TRIGGERED,
            {"deadline": str(s.disclosure.municipal_deadline), "from_stage": s.stage.value},
        )
        self.enter(Stage.TRANSACTION, "mandatory listing: municipal deadline passed (item 8)")

    def _route(self) -> None:
        s = self.state
        route, mean, decided_by = rules.route(s)
        # Routing took the exact mean; the state, the UI and the event show two places.
        if mean is not None and rules.two_places(mean) != mean:
            if patches.evaluation_in_plain_words():
                mean = rules.two_places(mean)
        s.evaluation = EvaluationOutcome(
            route=route, mean_score=mean, decided_at=workflow.now(), decided_by=decided_by
        )
        decision = s.operator_decision
        payload = s.evaluation.model_dump(mode="json")
        if decided_by.endswith(f"({rules.ABANDON_OVERRIDDEN})"):
            if patches.evaluation_in_plain_words():
                payload |= {"requested_route": "abandon", "overridden": rules.ABANDON_OVERRIDDEN}
        if s.evaluator is not None:
            # Only lifecycles evaluated by an institution have one (none recorded before it).
            report = s.institution_report if decision is None else None
            payload |= {"by": "institution" if report else "operator", "evaluator": s.evaluator}
            if report is not None:
                payload |= {"report_number": report.report_number, "signed_by": report.signed_by}
        self.record(
            EventType.EVALUATED,
            payload,
            actor=decision.actor if decision is not None else None,
        )
        if route is Recommendation.TRANSACTION:
            self._enter_after_maturity("evaluated ready for the market")
        elif route is Recommendation.PROOF_OF_CONCEPT:
            self.enter(Stage.PROOF_OF_CONCEPT, "evaluated as immature")
        elif route is Recommendation.RESOURCE:
            self._hold_as_resource("evaluation routed it to the resource pool")
        else:
            s.outcome_reason = "abandoned after evaluation"
            s.withdrawal = Withdrawal(
                reason="abandoned after evaluation",
                requested_by="expert panel" if s.institution_report is None else decided_by,
                abandon=True,
            )
            self.enter(Stage.REPORTING, "abandoned after evaluation")

    def _enter_after_maturity(self, note: str) -> None:
        if set(self.state.modes) & rules.CONTRACT_MODES:
            self.enter(Stage.TRANSACTION, note)
        else:
            self.enter(Stage.INCUBATION, note)

    def _missing_reviewers(self) -> list[str]:
        done = {r.reviewer_id for r in self.state.reviews}
        return [r for r in self.state.reviewers if r not in done]

    def _missing(self) -> dict[str, Any]:
        """Who has not reviewed, and (recorded since the patch) how many reviews are missing:
        without an assigned panel the names are unknown, the count is not."""
        if patches.evaluation_in_plain_words():
            return rules.missing_reviews(self.state)
        return {"missing": self._missing_reviewers()}
