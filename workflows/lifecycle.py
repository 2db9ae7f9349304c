"""The achievement lifecycle: one durable entity workflow per achievement, for years.

disclosure -> evaluation -> proof of concept -> transaction -> incubation -> reporting,
with the dormant scientific-resource state, withdrawal at any stage and the mandatory-listing
clock of municipal funding running through all of them.

Each stage is written to resume from the state alone, so any wait may end the run with
continue-as-new and the next run picks up at the same point.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.exchange import ExchangeActivities
    from activities.projections import ProjectionActivities
    from activities.registry import RegistryActivities
    from schemas.commands import Activation, ListingExpired, MandatoryListingExemption, Withdrawal
    from schemas.evaluation import (
        EvaluationOutcome,
        OperatorDecision,
        Recommendation,
        Review,
    )
    from schemas.events import EventType, LifecycleEvent
    from schemas.exchange_api import CreateListingRequest, SearchRequest, WithdrawListingRequest
    from schemas.identity import Actor
    from schemas.incubation import (
        CompanyFounded,
        EquityRegistration,
        IncubationExit,
        IncubationMilestone,
        IncubatorAdmission,
    )
    from schemas.lifecycle import (
        LifecycleInput,
        LifecycleResult,
        LifecycleState,
        Stage,
        StageEntry,
        Waiting,
    )
    from schemas.proof_of_concept import PocInput, PocResult
    from schemas.registry_api import (
        LifecycleReportRequest,
        RegisterAchievementRequest,
        RegisterContractRequest,
        RegisterEquityRequest,
    )
    from schemas.transaction import (
        Bid,
        ContractRegistration,
        Deal,
        Distribution,
        Listing,
        ListingStatus,
        Payment,
        RecordedPayment,
    )
    from workflows import rules
    from workflows import search_attributes as sa
    from workflows.ids import poc_child_id
    from workflows.options import (
        EXTERNAL_RETRY,
        EXTERNAL_TIMEOUT,
        PROJECTION_RETRY,
        PROJECTION_TIMEOUT,
        system_queue,
    )
    from workflows.proof_of_concept import ProofOfConcept

SEEN_EVENT_IDS_KEPT = 500
T = TypeVar("T")


class _Interrupt(Exception):
    """Leaves whatever stage is running; the run loop decides what comes next."""


class _Withdraw(_Interrupt):
    pass


class _MandatoryListingDue(_Interrupt):
    pass


class _ContinueAsNew(_Interrupt):
    pass


@workflow.defn(name="AchievementLifecycle")
class AchievementLifecycle:
    @workflow.init
    def __init__(self, input: LifecycleInput) -> None:
        info = workflow.info()
        self.state: LifecycleState = input.resume or LifecycleState(
            achievement_id=input.disclosure.achievement_id,
            workflow_id=info.workflow_id,
            disclosure=input.disclosure,
            policy=input.policy,
            exchanges=list(dict.fromkeys(input.exchanges)),
            reviewers=input.reviewers,
            asking_price=input.asking_price,
            pricing=input.pricing,
            modes=list(input.disclosure.intended_modes),
        )

    # ------------------------------------------------------------------ run loop

    @workflow.run
    async def run(self, input: LifecycleInput) -> LifecycleResult:
        s = self.state
        if input.resume is None:
            self._enter(Stage.DISCLOSURE, "disclosed")
            self._emit(
                EventType.DISCLOSED,
                rules.disclosed_payload(s.disclosure),
                source=f"institution:{input.disclosed_by}",
                at=input.disclosed_at,
                actor=input.discloser,
            )
        while not s.stage.is_final:
            try:
                await self._run_stage(s.stage)
            except _Withdraw:
                await self._wind_down()
            except _MandatoryListingDue:
                await self._trigger_mandatory_listing()
            except _ContinueAsNew:
                await self._flush()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    LifecycleInput(
                        disclosure=s.disclosure,
                        policy=s.policy,
                        disclosed_at=input.disclosed_at,
                        resume=self.state,
                    )
                )
        await self._flush()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return rules.result(self.state)

    async def _run_stage(self, stage: Stage) -> None:
        handlers: dict[Stage, Callable[[], Any]] = {
            Stage.DISCLOSURE: self._disclosure,
            Stage.RESOURCE: self._resource,
            Stage.EVALUATION: self._evaluation,
            Stage.PROOF_OF_CONCEPT: self._proof_of_concept,
            Stage.TRANSACTION: self._transaction,
            Stage.INCUBATION: self._incubation,
            Stage.REPORTING: self._reporting,
        }
        await handlers[stage]()

    # ------------------------------------------------------------------ stages

    async def _disclosure(self) -> None:
        s = self.state
        if s.registration_number is None:
            d = s.disclosure
            registration = await self._external(
                "registry",
                RegistryActivities.register_achievement,
                [
                    self._key("register-achievement"),
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
            self._emit(
                EventType.REGISTERED,
                {"registration_number": registration.registration_number},
                source="registry",
            )
        if s.modes:
            self._enter(Stage.EVALUATION, "intended modes declared")
        else:
            self._hold_as_resource("no clear intention to transform")

    async def _resource(self) -> None:
        self._wait_for("an activation with transformation modes (dormant scientific resource)")
        await self._wait(lambda: self.state.stage is not Stage.RESOURCE)

    async def _evaluation(self) -> None:
        s, policy = self.state, self.state.policy
        if s.search is None:
            s.search = await self._external(
                "exchange",
                ExchangeActivities.search,
                [
                    s.exchanges[0],
                    SearchRequest(field=s.disclosure.field, title=s.disclosure.title),
                ],
            )
            self._emit(EventType.TECHNOLOGY_SEARCHED, s.search.model_dump(mode="json"), "exchange")

        def decided() -> bool:
            return len(s.reviews) >= policy.reviewer_count or s.operator_decision is not None

        started = s.stage_since() or workflow.now()
        reminder_at = started + policy.review_sla
        escalation_at = reminder_at + policy.review_escalation_grace
        if not s.review_reminded:
            self._wait_for(
                f"{policy.reviewer_count - len(s.reviews)} expert review(s)", reminder_at
            )
            if not await self._wait(decided, until=reminder_at):
                s.review_reminded = True
                self._emit(EventType.REVIEW_REMINDER, {"missing": self._missing_reviewers()})
        if not decided() and not s.review_escalated:
            self._wait_for("the remaining expert reviews after a reminder", escalation_at)
            if not await self._wait(decided, until=escalation_at):
                s.review_escalated = True
                self._emit(EventType.REVIEW_ESCALATED, {"missing": self._missing_reviewers()})
        if not decided():
            self._wait_for("an operator's routing decision (review SLA escalated)")
            await self._wait(decided)
        self._route()

    async def _proof_of_concept(self) -> None:
        s = self.state
        if s.poc is None:
            self._wait_for("the proof-of-concept fund: milestones and the go/no-go gate")
            child = await workflow.start_child_workflow(
                ProofOfConcept.run,
                PocInput(
                    achievement_id=s.achievement_id,
                    parent_workflow_id=s.workflow_id,
                    title=s.disclosure.title,
                    institution_code=s.disclosure.institution.code,
                    trl=s.disclosure.trl,
                ),
                id=poc_child_id(s.workflow_id),
                static_summary=f"Proof of concept of {s.achievement_id}",
            )
            try:
                # No continue-as-new here: the child is bound to this run.
                await self._wait(child.done, can_continue_as_new=False)
            except _Interrupt:
                child.cancel()
                raise
            result: PocResult = child.result()
            s.poc = result
            for milestone_id in result.milestones_overdue:
                self._emit(
                    EventType.POC_MILESTONE_OVERDUE, {"milestone_id": milestone_id}, "poc-fund"
                )
            self._emit(
                EventType.POC_FUNDED,
                {
                    "application_number": result.application_number,
                    "granted_amount": str(result.granted_amount),
                },
                "registry",
            )
            self._emit(
                EventType.POC_DECIDED,
                {"go": result.go, "reason": result.reason},
                f"poc-fund:{result.decided_by}" if result.decided_by else "operator",
                actor=result.actor,
            )
        if s.poc.go:
            self._enter_after_maturity("proof of concept passed")
        else:
            self._hold_as_resource(f"proof of concept: no-go ({s.poc.reason})")

    async def _transaction(self) -> None:
        s = self.state
        await self._list_on_exchanges(mandatory=s.mandatory_listing_triggered)
        if s.deal is None:
            self._wait_for(
                "a deal on the exchange (publicity period first)",
                max(x.publicity_ends_at for x in s.listings),
            )
            await self._wait(lambda: s.deal is not None)
        assert s.deal is not None
        await self._withdraw_listings(f"dealt on {s.deal.exchange}", keep=s.deal.listing_id)
        if s.contract is None:
            d = s.deal
            registration = await self._external(
                "registry",
                RegistryActivities.register_contract,
                [
                    self._key("register-contract"),
                    RegisterContractRequest(
                        achievement_id=s.achievement_id,
                        registration_number=s.registration_number or "",
                        contract_type=d.contract_type,
                        amount=d.amount,
                        buyer=d.buyer,
                        seller_institution=s.disclosure.institution.code,
                        exchange=d.exchange,
                    ),
                ],
            )
            s.contract = ContractRegistration(
                certificate_number=registration.certificate_number,
                verified_amount=registration.verified_amount,
                tax_preference_eligible=registration.tax_preference_eligible,
                registered_at=registration.registered_at,
            )
            self._emit(
                EventType.CONTRACT_REGISTERED,
                {
                    **s.contract.model_dump(mode="json"),
                    "contract_type": d.contract_type.value,
                    "amount": str(d.amount),
                    # Item 8: exchange deals of state-owned institutions are exempt from
                    # decision-making liability for the price.
                    "trading_liability_exempt": s.disclosure.institution.state_owned,
                },
                source="registry",
            )
        await self._collect_payments()
        if set(s.modes) & rules.COMPANY_MODES:
            self._enter(Stage.INCUBATION, "contract paid; founding a company")
        else:
            self._enter(Stage.REPORTING, "contract fully paid")

    async def _collect_payments(self) -> None:
        s = self.state
        assert s.deal is not None
        deal = s.deal
        while len(s.payments) < deal.instalments:
            instalment = len(s.payments) + 1
            last = (
                s.payments[-1].received_at if s.payments else (s.deal_accepted_at or workflow.now())
            )
            due = last + s.policy.payment_grace
            self._wait_for(f"instalment {instalment} of {deal.instalments}", due)

            def paid_up(n: int = instalment) -> bool:
                return len(s.payments) >= n

            paid = await self._wait(paid_up, until=due)
            if not paid and instalment not in s.overdue_instalments:
                s.overdue_instalments.append(instalment)
                self._emit(
                    EventType.PAYMENT_OVERDUE, {"instalment": instalment, "due": due.isoformat()}
                )
                self._wait_for(f"overdue instalment {instalment} of {deal.instalments}")
                await self._wait(paid_up)

    async def _incubation(self) -> None:
        s = self.state
        if s.company is None:
            self._wait_for("the company to be founded")
            await self._wait(lambda: s.company is not None)
        assert s.company is not None
        if s.equity is None:
            c = s.company
            state_owned = s.disclosure.institution.state_owned
            response = await self._external(
                "registry",
                RegistryActivities.register_equity,
                [
                    self._key("register-equity"),
                    RegisterEquityRequest(
                        achievement_id=s.achievement_id,
                        company_name=c.company_name,
                        credit_code=c.credit_code,
                        equity_share=c.equity_share,
                        valuation=c.valuation,
                        state_owned=state_owned,
                    ),
                ],
            )
            s.equity = EquityRegistration(
                equity_certificate=response.equity_certificate,
                state_owned_equity=response.state_owned_equity,
                registered_at=response.registered_at,
            )
            self._emit(
                EventType.EQUITY_REGISTERED,
                {
                    "equity_certificate": response.equity_certificate,
                    # Item 2: state-owned equity from achievements is managed by category.
                    "state_owned_equity": response.state_owned_equity,
                    "categorized_management": response.state_owned_equity,
                    "equity_share": str(c.equity_share),
                    "valuation": str(c.valuation),
                },
                source="registry",
            )
        if s.incubation_exit is None:
            self._wait_for("incubation milestones and the exit")
            await self._wait(lambda: s.incubation_exit is not None)
        self._enter(
            Stage.REPORTING, f"incubation exit: {s.incubation_exit and s.incubation_exit.kind}"
        )

    async def _reporting(self) -> None:
        s = self.state
        final = Stage.COMPLETED
        if s.withdrawal is not None:
            final = Stage.ABANDONED if s.withdrawal.abandon else Stage.WITHDRAWN
        if s.report_number is None:
            receipt = await self._external(
                "registry",
                RegistryActivities.submit_lifecycle_report,
                [
                    self._key("lifecycle-report"),
                    LifecycleReportRequest(
                        achievement_id=s.achievement_id,
                        registration_number=s.registration_number,
                        final_stage=final.value,
                        summary=rules.result(self.state).model_dump(mode="json"),
                    ),
                ],
            )
            s.report_number = receipt.receipt_number
            self._emit(
                EventType.REPORT_SUBMITTED, {"report_number": receipt.receipt_number}, "registry"
            )
        self._enter(final, s.outcome_reason or "lifecycle complete")
        self._emit(
            {
                Stage.COMPLETED: EventType.COMPLETED,
                Stage.WITHDRAWN: EventType.WITHDRAWN,
                Stage.ABANDONED: EventType.ABANDONED,
            }[final],
            {"reason": s.outcome_reason} if s.outcome_reason else {},
            actor=s.withdrawal.actor if s.withdrawal is not None else None,
        )
        self._wait_for("nothing: the lifecycle is over")

    # ------------------------------------------------------------------ cross-cutting

    async def _wind_down(self) -> None:
        s = self.state
        w = s.withdrawal
        assert w is not None
        s.outcome_reason = w.reason
        await self._withdraw_listings(f"achievement withdrawn: {w.reason}", keep=None)
        self._enter(Stage.REPORTING, f"{'abandoned' if w.abandon else 'withdrawn'}: {w.reason}")

    async def _trigger_mandatory_listing(self) -> None:
        s = self.state
        s.mandatory_listing_triggered = True
        self._emit(
            EventType.MANDATORY_LISTING_TRIGGERED,
            {"deadline": str(s.disclosure.municipal_deadline), "from_stage": s.stage.value},
        )
        self._enter(Stage.TRANSACTION, "mandatory listing: municipal deadline passed (item 8)")

    async def _list_on_exchanges(self, mandatory: bool) -> None:
        s = self.state
        listed = {x.exchange for x in s.listings}
        for exchange in s.exchanges:
            if exchange in listed:
                continue
            # A deal may close on an earlier exchange while a later listing is still being
            # retried: list no further. Gated: running lifecycles keep their recorded path.
            if s.deal is not None and workflow.patched("no-listing-after-deal"):
                break
            publicity_days = max(0, round(s.policy.publicity_period / timedelta(days=1)))
            response = await self._external(
                "exchange",
                ExchangeActivities.create_listing,
                [
                    self._key(f"listing/{exchange}"),
                    exchange,
                    CreateListingRequest(
                        achievement_id=s.achievement_id,
                        title=s.disclosure.title,
                        field=s.disclosure.field,
                        seller_institution=s.disclosure.institution.code,
                        asking_price=s.asking_price,
                        pricing=s.pricing,
                        publicity_days=publicity_days,
                        mandatory=mandatory,
                    ),
                ],
            )
            # The workflow's own policy decides when publicity ends, whatever the exchange says.
            listing = Listing(
                exchange=exchange,
                listing_id=response.listing_id,
                status=ListingStatus.OPEN,
                asking_price=s.asking_price,
                pricing=s.pricing,
                listed_at=workflow.now(),
                publicity_ends_at=workflow.now() + s.policy.publicity_period,
                mandatory=mandatory,
            )
            s.listings.append(listing)
            self._emit(EventType.LISTED, listing.model_dump(mode="json"), "exchange")

    async def _withdraw_listings(self, reason: str, keep: str | None) -> None:
        s = self.state
        for i, listing in enumerate(s.listings):
            if listing.status is not ListingStatus.OPEN or listing.listing_id == keep:
                continue
            payload: dict[str, Any] = {
                "exchange": listing.exchange,
                "listing_id": listing.listing_id,
                "reason": reason,
            }
            try:
                await self._external(
                    "exchange",
                    ExchangeActivities.withdraw_listing,
                    [
                        self._key(f"withdraw/{listing.exchange}/{listing.listing_id}"),
                        listing.exchange,
                        listing.listing_id,
                        WithdrawListingRequest(reason=reason[:500]),
                    ],
                )
                s.listings[i] = listing.model_copy(update={"status": ListingStatus.WITHDRAWN})
            except ActivityError as err:
                # The exchange refused for good (e.g. a second deal closed there at the same
                # moment): record it for an operator instead of failing the whole lifecycle.
                if not isinstance(err.cause, ApplicationError) or not err.cause.non_retryable:
                    raise
                s.listings[i] = listing.model_copy(update={"status": ListingStatus.DEALT})
                payload |= {"withdrawn": False, "refused": err.cause.message}
                workflow.logger.warning("Withdrawal of %s refused", listing.listing_id)
            self._emit(EventType.LISTING_WITHDRAWN, payload, "workflow")

    def _route(self) -> None:
        s = self.state
        route, mean, decided_by = rules.route(s)
        s.evaluation = EvaluationOutcome(
            route=route, mean_score=mean, decided_at=workflow.now(), decided_by=decided_by
        )
        decision = s.operator_decision
        self._emit(
            EventType.EVALUATED,
            s.evaluation.model_dump(mode="json"),
            actor=decision.actor if decision is not None else None,
        )
        if route is Recommendation.TRANSACTION:
            self._enter_after_maturity("evaluated ready for the market")
        elif route is Recommendation.PROOF_OF_CONCEPT:
            self._enter(Stage.PROOF_OF_CONCEPT, "evaluated as immature")
        elif route is Recommendation.RESOURCE:
            self._hold_as_resource("evaluation routed it to the resource pool")
        else:
            s.outcome_reason = "abandoned after evaluation"
            s.withdrawal = Withdrawal(
                reason="abandoned after evaluation", requested_by="expert panel", abandon=True
            )
            self._enter(Stage.REPORTING, "abandoned after evaluation")

    def _enter_after_maturity(self, note: str) -> None:
        if set(self.state.modes) & rules.CONTRACT_MODES:
            self._enter(Stage.TRANSACTION, note)
        else:
            self._enter(Stage.INCUBATION, note)

    def _hold_as_resource(self, reason: str) -> None:
        self._enter(Stage.RESOURCE, reason)
        self._emit(EventType.HELD_AS_RESOURCE, {"reason": reason})

    def _missing_reviewers(self) -> list[str]:
        done = {r.reviewer_id for r in self.state.reviews}
        return [r for r in self.state.reviewers if r not in done]

    # ------------------------------------------------------------------ waiting

    def _interrupt_pending(self) -> bool:
        due = rules.mandatory_due_at(self.state)
        return (
            bool(self.state.outbox)
            or self.state.withdrawal is not None
            or (due is not None and workflow.now() >= due)
        )

    def _raise_interrupts(self, can_continue_as_new: bool) -> None:
        if self.state.withdrawal is not None and self.state.outcome_reason is None:
            raise _Withdraw()
        due = rules.mandatory_due_at(self.state)
        if due is not None and workflow.now() >= due:
            raise _MandatoryListingDue()
        if can_continue_as_new and workflow.info().is_continue_as_new_suggested():
            raise _ContinueAsNew()

    async def _wait(
        self,
        condition: Callable[[], bool],
        until: datetime | None = None,
        can_continue_as_new: bool = True,
    ) -> bool:
        """Wait for `condition` until `until`; record events and honour interrupts meanwhile.

        Returns whether the condition held. Raises an `_Interrupt` for a withdrawal, a due
        mandatory listing, or the server's continue-as-new suggestion.
        """
        while True:
            await self._flush()
            # Interrupts first: when signals keep the condition true (a stream of payments),
            # the run must still reach continue-as-new once the server suggests it.
            self._raise_interrupts(can_continue_as_new)
            if condition():
                return True
            now = workflow.now()
            wake_times = [t for t in (until, rules.mandatory_due_at(self.state)) if t is not None]
            if until is not None and now >= until:
                return False
            timeout = (min(wake_times) - now) if wake_times else None
            try:
                await workflow.wait_condition(
                    lambda: (
                        condition()
                        or self._interrupt_pending()
                        or (can_continue_as_new and workflow.info().is_continue_as_new_suggested())
                    ),
                    timeout=timeout,
                    # Names the timer in the UI's timeline, e.g. "instalment 2 of 3".
                    timeout_summary=self._timer_summary(until),
                )
            except TimeoutError:
                pass

    def _timer_summary(self, until: datetime | None) -> str | None:
        due = rules.mandatory_due_at(self.state)
        if until is not None and (due is None or until <= due):
            return (self.state.waiting.on if self.state.waiting else "deadline")[:100]
        return "mandatory listing deadline (item 8)" if due is not None else None

    # ------------------------------------------------------------------ events and visibility

    async def _external(
        self,
        system: Literal["registry", "exchange"],
        activity: Callable[..., Awaitable[T]],
        args: list[Any],
    ) -> T:
        """Call the registry or exchange: retried through outages on the system's own queue."""
        result: T = await workflow.execute_activity_method(
            activity,
            args=args,
            start_to_close_timeout=EXTERNAL_TIMEOUT,
            task_queue=system_queue(system),
            retry_policy=EXTERNAL_RETRY,
        )
        return result

    def _key(self, step: str) -> str:
        """Idempotency key of an external call: stable across retries and continue-as-new."""
        return f"{self.state.workflow_id}/{step}"

    def _enter(self, stage: Stage, note: str) -> None:
        s = self.state
        s.stage = stage
        s.timeline.append(StageEntry(stage=stage, entered_at=workflow.now(), note=note))
        s.waiting = None
        self._emit(EventType.STAGE_ENTERED, {"stage": stage.value, "note": note})
        workflow.upsert_search_attributes(rules.search_attributes(s))
        workflow.logger.info("Stage %s: %s", stage.value, note)

    def _wait_for(self, what: str, until: datetime | None = None) -> None:
        self.state.waiting = Waiting(on=what, until=until)
        by = f" by {until.strftime('%Y-%m-%d %H:%M UTC')}" if until else ""
        due = rules.mandatory_due_at(self.state)
        clock = f" Mandatory listing due {due.date().isoformat()}." if due else ""
        stage = self.state.stage.value.replace("_", " ").title()
        workflow.set_current_details(f"**{stage}**: waiting for {what}{by}.{clock}")

    def _emit(
        self,
        type: EventType,
        payload: dict[str, Any],
        source: str = "workflow",
        at: datetime | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Record a state change; `actor`: the authenticated person who caused it, if any."""
        s = self.state
        s.outbox.append(
            LifecycleEvent(
                event_id=str(workflow.uuid4()),
                achievement_id=s.achievement_id,
                workflow_id=s.workflow_id,
                institution_code=s.disclosure.institution.code,
                type=type,
                stage=s.stage.value,
                occurred_at=at or workflow.now(),
                source=source,
                payload=payload,
                actor=actor,
            )
        )

    async def _flush(self) -> None:
        """Append the outbox to PostgreSQL, in order, each event exactly once."""
        s = self.state
        while s.outbox:
            if workflow.patched("local-projection"):
                # A local activity: appended by this worker (it holds the pool) within the
                # workflow task, one marker in history instead of three events and a task round
                # trip through the server. The append is short and idempotent.
                batch = list(s.outbox)
                await workflow.execute_local_activity_method(
                    ProjectionActivities.record_events,
                    args=[batch, rules.view(s, workflow.now())],
                    start_to_close_timeout=PROJECTION_TIMEOUT,
                    retry_policy=PROJECTION_RETRY,
                )
            elif workflow.patched("batched-projection"):
                # One activity per wake-up instead of one per event: a third of the history.
                batch = list(s.outbox)
                await workflow.execute_activity_method(
                    ProjectionActivities.record_events,
                    args=[batch, rules.view(s, workflow.now())],
                    start_to_close_timeout=PROJECTION_TIMEOUT,
                    retry_policy=PROJECTION_RETRY,
                )
            else:
                batch = s.outbox[:1]
                await workflow.execute_activity_method(
                    ProjectionActivities.record_event,
                    args=[batch[0], rules.view(s, workflow.now())],
                    start_to_close_timeout=PROJECTION_TIMEOUT,
                    retry_policy=PROJECTION_RETRY,
                )
            # Handlers may have appended more meanwhile: only the recorded ones leave.
            del s.outbox[: len(batch)]
            s.events_recorded += len(batch)

    def _first_time(self, event_id: str) -> bool:
        """Deduplicate redelivered external events by their id."""
        seen = self.state.seen_event_ids
        if event_id in seen:
            return False
        seen.append(event_id)
        del seen[:-SEEN_EVENT_IDS_KEPT]
        return True

    # ------------------------------------------------------------------ queries

    @workflow.query(description="The full state of the achievement, with its stage timeline.")
    def state_query(self) -> LifecycleState:
        return self.state

    # ------------------------------------------------------------------ updates (people)

    @workflow.update(description="An assigned expert submits a scored review.")
    def submit_review(self, review: Review) -> int:
        self.state.reviews.append(review)
        self._emit(
            EventType.REVIEW_SUBMITTED,
            {
                "reviewer_id": review.reviewer_id,
                "mean": str(review.mean),
                "recommendation": review.recommendation.value,
            },
            source=f"expert:{review.reviewer_id}",
            actor=review.actor,
        )
        return len(self.state.reviews)

    @submit_review.validator
    def _validate_review(self, review: Review) -> None:
        s = self.state
        if s.stage is not Stage.EVALUATION:
            raise ValueError(f"stage: reviews are taken in evaluation, not {s.stage.value}")
        if s.reviewers and review.reviewer_id not in s.reviewers:
            raise ValueError(f"reviewer_id: {review.reviewer_id} is not on the assigned panel")
        if any(r.reviewer_id == review.reviewer_id for r in s.reviews):
            raise ValueError(f"reviewer_id: {review.reviewer_id} has already reviewed")
        if len(s.reviews) >= s.policy.reviewer_count or s.operator_decision is not None:
            raise ValueError("stage: the evaluation is already decided")

    @workflow.update(description="An operator routes the achievement (e.g. after escalation).")
    def decide(self, decision: OperatorDecision) -> str:
        self.state.operator_decision = decision
        return decision.route.value

    @decide.validator
    def _validate_decide(self, decision: OperatorDecision) -> None:
        if self.state.stage is not Stage.EVALUATION:
            raise ValueError(
                f"stage: decisions are taken in evaluation, not {self.state.stage.value}"
            )
        if self.state.operator_decision is not None:
            raise ValueError("stage: an operator decision was already recorded")

    @workflow.update(description="Activate a dormant scientific resource with its modes.")
    def activate(self, activation: Activation) -> str:
        s = self.state
        s.modes = list(dict.fromkeys(activation.modes))
        self._emit(
            EventType.ACTIVATED,
            {"modes": [m.value for m in s.modes], "reason": activation.reason},
            source=f"operator:{activation.activated_by}",
            actor=activation.actor,
        )
        # Reviews and decisions of an earlier evaluation do not carry over.
        s.reviews, s.operator_decision, s.evaluation = [], None, None
        s.review_reminded = s.review_escalated = False
        self._enter(Stage.EVALUATION, "activated from the resource pool")
        return s.stage.value

    @activate.validator
    def _validate_activate(self, activation: Activation) -> None:
        if self.state.stage is not Stage.RESOURCE:
            raise ValueError(
                f"stage: only a resource can be activated, not {self.state.stage.value}"
            )

    @workflow.update(description="Withdraw or abandon the achievement, with a reason.")
    def withdraw(self, withdrawal: Withdrawal) -> str:
        self.state.withdrawal = withdrawal
        return "abandoning" if withdrawal.abandon else "withdrawing"

    @withdraw.validator
    def _validate_withdraw(self, withdrawal: Withdrawal) -> None:
        s = self.state
        if s.stage.is_final or s.stage is Stage.REPORTING:
            raise ValueError(f"stage: the lifecycle is already ending ({s.stage.value})")
        if s.withdrawal is not None:
            raise ValueError("stage: a withdrawal is already under way")

    @workflow.update(description="Exempt from mandatory listing, with a justification.")
    def exempt_mandatory_listing(self, exemption: MandatoryListingExemption) -> str:
        self.state.mandatory_listing_exempted = True
        self._emit(
            EventType.MANDATORY_LISTING_EXEMPTED,
            {"justification": exemption.justification},
            source=f"operator:{exemption.approved_by}",
            actor=exemption.actor,
        )
        workflow.upsert_search_attributes([sa.MANDATORY_LISTING_DUE.value_unset()])
        return "exempted"

    @exempt_mandatory_listing.validator
    def _validate_exemption(self, exemption: MandatoryListingExemption) -> None:
        s = self.state
        if s.disclosure.municipal_deadline is None:
            raise ValueError("funding: no municipal finance, so no mandatory listing applies")
        if s.mandatory_listing_triggered:
            raise ValueError("stage: the mandatory listing has already been made")
        if s.mandatory_listing_exempted:
            raise ValueError("stage: already exempted")

    # ------------------------------------------------------------------ signals (systems)

    @workflow.signal(description="The exchange reports a bid on a listing.")
    def exchange_bid(self, bid: Bid) -> None:
        if not self._first_time(bid.event_id) or not self._our_listing(bid.listing_id):
            return
        if self._on_another_exchange(bid.listing_id, bid.exchange):
            return
        self._emit(EventType.BID_RECEIVED, bid.model_dump(mode="json"), f"exchange:{bid.exchange}")

    @workflow.signal(description="The exchange reports a closed deal; the first deal wins.")
    def exchange_deal(self, deal: Deal) -> None:
        s = self.state
        if not self._first_time(deal.event_id):
            return
        listing = self._our_listing(deal.listing_id)
        if listing is not None and self._on_another_exchange(listing.listing_id, deal.exchange):
            self._emit(
                EventType.DEAL_CLOSED,
                {
                    **deal.model_dump(mode="json"),
                    "accepted": False,
                    "reason": f"the listing is on {listing.exchange}, not {deal.exchange}",
                },
                f"exchange:{deal.exchange}",
            )
            return
        if listing is None or s.stage is not Stage.TRANSACTION:
            workflow.logger.warning("Deal on %s ignored in stage %s", deal.listing_id, s.stage)
            return
        if s.deal is not None:
            self._emit(
                EventType.DEAL_CLOSED,
                {
                    **deal.model_dump(mode="json"),
                    "accepted": False,
                    "reason": "another deal closed first",
                },
                f"exchange:{deal.exchange}",
            )
            return
        if workflow.now() < listing.publicity_ends_at:
            self._emit(
                EventType.DEAL_CLOSED,
                {
                    **deal.model_dump(mode="json"),
                    "accepted": False,
                    "reason": "publicity period not over",
                },
                f"exchange:{deal.exchange}",
            )
            return
        s.deal = deal
        s.deal_accepted_at = workflow.now()
        for i, item in enumerate(s.listings):
            if item.listing_id == deal.listing_id:
                s.listings[i] = item.model_copy(update={"status": ListingStatus.DEALT})
        self._emit(
            EventType.DEAL_CLOSED,
            {**deal.model_dump(mode="json"), "accepted": True},
            f"exchange:{deal.exchange}",
        )

    @workflow.signal(description="The exchange reports an instalment paid by the buyer.")
    def exchange_payment(self, payment: Payment) -> None:
        s = self.state
        if not self._first_time(payment.event_id):
            return
        if self._on_another_exchange(payment.listing_id, payment.exchange):
            return
        if s.deal is None or payment.listing_id != s.deal.listing_id:
            workflow.logger.warning("Payment for %s ignored: no such deal", payment.listing_id)
            return
        if any(p.payment.instalment == payment.instalment for p in s.payments):
            return
        # Payments recorded before the team's share rounded up replay with half-up rounding.
        rounds_up = workflow.patched("team-share-rounds-up")
        distribution = Distribution.of(payment, s.policy, team_rounds_up=rounds_up)
        s.payments.append(
            RecordedPayment(payment=payment, distribution=distribution, received_at=workflow.now())
        )
        self._emit(
            EventType.PAYMENT_RECEIVED,
            {
                **payment.model_dump(mode="json"),
                "distribution": distribution.model_dump(mode="json"),
            },
            f"exchange:{payment.exchange}",
        )

    @workflow.signal(description="The exchange reports that a listing expired.")
    def listing_expired(self, expired: ListingExpired) -> None:
        s = self.state
        if not self._first_time(expired.event_id):
            return
        for i, item in enumerate(s.listings):
            if item.listing_id == expired.listing_id and item.status is ListingStatus.OPEN:
                s.listings[i] = item.model_copy(update={"status": ListingStatus.EXPIRED})

    def _incubating(self, what: str) -> bool:
        """Incubator events count once a company is on the way, never before."""
        s = self.state
        ok = s.stage is Stage.INCUBATION or (
            s.stage is Stage.TRANSACTION and bool(set(s.modes) & rules.COMPANY_MODES)
        )
        if not ok:
            workflow.logger.warning("Incubator event %s ignored in stage %s", what, s.stage)
        return ok

    @workflow.signal(description="The incubator reports that the company was founded.")
    def company_founded(self, company: CompanyFounded) -> None:
        s = self.state
        if self._incubating("company_founded") and self._first_time(company.event_id):
            if s.company is None:
                s.company = company
                self._emit(EventType.COMPANY_FOUNDED, company.model_dump(mode="json"), "incubator")

    @workflow.signal(description="An incubator or science park admits the company.")
    def incubator_admitted(self, admission: IncubatorAdmission) -> None:
        s = self.state
        # Out of order (before the company exists): not marked seen, so a redelivery applies.
        if self._incubating("incubator_admitted") and s.company is not None:
            if self._first_time(admission.event_id) and s.incubator is None:
                s.incubator = admission
                self._emit(
                    EventType.INCUBATOR_ADMITTED, admission.model_dump(mode="json"), "incubator"
                )

    @workflow.signal(description="The incubator reports a financing round, product or revenue.")
    def incubation_milestone(self, milestone: IncubationMilestone) -> None:
        s = self.state
        if self._incubating("incubation_milestone") and s.company is not None:
            if self._first_time(milestone.event_id):
                s.incubation_milestones.append(milestone)
                self._emit(
                    EventType.INCUBATION_MILESTONE, milestone.model_dump(mode="json"), "incubator"
                )

    @workflow.signal(description="The incubator reports the exit of the company.")
    def incubation_exit(self, exit: IncubationExit) -> None:
        s = self.state
        if self._incubating("incubation_exit") and s.company is not None:
            if self._first_time(exit.event_id) and s.incubation_exit is None:
                s.incubation_exit = exit
                self._emit(EventType.INCUBATION_EXITED, exit.model_dump(mode="json"), "incubator")

    def _our_listing(self, listing_id: str) -> Listing | None:
        return next((x for x in self.state.listings if x.listing_id == listing_id), None)

    def _on_another_exchange(self, listing_id: str, exchange: str) -> bool:
        """An exchange speaks only for its own listings (the gateway checked who signed).

        Gated only where it bites: a recorded history never had such an event, so replay never
        reaches the patch call, and running lifecycles take the check from their next event.
        """
        listing = self._our_listing(listing_id)
        mismatch = listing is not None and listing.exchange != exchange
        if mismatch and workflow.patched("exchange-owns-its-listings"):
            workflow.logger.warning(
                "Event of %s for listing %s on another exchange refused", exchange, listing_id
            )
            return True
        return False
