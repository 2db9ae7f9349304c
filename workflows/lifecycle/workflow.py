"""The achievement lifecycle: one durable entity workflow per achievement, for years.

disclosure -> evaluation -> proof of concept -> transaction -> incubation -> reporting,
with the dormant scientific-resource state, withdrawal at any stage and the mandatory-listing
clock of municipal funding running through all of them (plan item 8).

This module is the workflow's face: its run loop, and every query, update, validator and signal
on the decorated class. The stages are in stages.py, the engine in engine.py, the rules in
workflows/rules.py, every patch gate in workflows/patches.py.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    import workflows.rules as rules
    import workflows.search_attributes as sa
    from schemas.commands import Activation, ListingExpired, MandatoryListingExemption, Withdrawal
    from schemas.evaluation import OperatorDecision, Review
    from schemas.evaluation_institution import chosen_evaluator
    from schemas.events import EventType
    from schemas.incubation import (
        CompanyFounded,
        IncubationExit,
        IncubationMilestone,
        IncubatorAdmission,
    )
    from schemas.lifecycle import (
        AttentionReason,
        LifecycleInput,
        LifecycleResult,
        LifecycleState,
        Stage,
    )
    from schemas.proof_of_concept import PocProgress, PocProgressKind
    from schemas.refusals import ExternalEvent, HeldIncubatorEvent
    from schemas.transaction import (
        Bid,
        Deal,
        DealRejection,
        Distribution,
        Listing,
        ListingStatus,
        Payment,
        RecordedPayment,
    )
    from workflows.proof_of_concept import POC_PROGRESS_SIGNAL

# The lifecycle's own modules run in the sandbox (its protection of our code is kept).
from workflows.lifecycle.engine import (
    ContinueAsNewSuggested,
    MandatoryListingDue,
    WithdrawalRequested,
)
from workflows.lifecycle.stages import LifecycleStages


@workflow.defn(name="AchievementLifecycle")
class AchievementLifecycle(LifecycleStages):
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
            # Plan item 6: the disclosure's choice, else the policy's default for the field.
            evaluator=chosen_evaluator(
                input.evaluation, input.policy.evaluation_institutions, input.disclosure.field
            ),
        )

    # ------------------------------------------------------------------ run loop

    @workflow.run
    async def run(self, input: LifecycleInput) -> LifecycleResult:
        patches.decide_at_run_start()  # see workflows/patches.py RUN_START_GATES
        s = self.state
        if input.resume is None:
            self.enter(Stage.DISCLOSURE, "disclosed")
            self.record(
                EventType.DISCLOSED,
                rules.disclosed_payload(s.disclosure),
                source=f"institution:{input.disclosed_by}",
                at=input.disclosed_at,
                actor=input.discloser,
            )
        while not s.stage.is_final:
            try:
                await self._run_stage(s.stage)
            except WithdrawalRequested:
                await self._wind_down()
            except MandatoryListingDue:
                await self._trigger_mandatory_listing()
            except ContinueAsNewSuggested:
                # The outbox is part of the state: the new run appends it at its first wait.
                # (Runs recorded before projection-as-activity appended it here.)
                if not patches.projection_as_activity():
                    await self.record_outbox()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    LifecycleInput(
                        disclosure=s.disclosure,
                        policy=s.policy,
                        disclosed_at=input.disclosed_at,
                        resume=self.state,
                    )
                )
        await self.record_everything()
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

    # ------------------------------------------------------------------ queries

    @workflow.query(description="The full state of the achievement, with its stage timeline.")
    def state_query(self) -> LifecycleState:
        return self.state

    # ------------------------------------------------------------------ updates (people)

    @workflow.update(description="An assigned expert submits a scored review.")
    def submit_review(self, review: Review) -> int:
        self.state.reviews.append(review)
        self.record(
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
        if s.evaluator is not None:
            raise ValueError(
                f"stage: evaluation institution {s.evaluator} evaluates, not the panel"
            )
        if s.reviewers and review.reviewer_id not in s.reviewers:
            raise ValueError(f"reviewer_id: {review.reviewer_id} is not on the assigned panel")
        if any(r.reviewer_id == review.reviewer_id for r in s.reviews):
            raise ValueError(f"reviewer_id: {review.reviewer_id} has already reviewed")
        if len(s.reviews) >= s.policy.reviewer_count or s.operator_decision is not None:
            raise ValueError("stage: the evaluation is already decided")

    @workflow.update(description="An operator routes the achievement (e.g. after escalation).")
    def decide(self, decision: OperatorDecision) -> str:
        self.state.operator_decision = decision
        # Answer with what will happen: municipal finance turns an abandon into a resource.
        if rules.abandon_overridden(self.state, decision.route):
            if patches.evaluation_in_plain_words():
                return rules.operator_route_answer(self.state, decision.route)
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
        self.record(
            EventType.ACTIVATED,
            {"modes": [m.value for m in s.modes], "reason": activation.reason},
            source=f"operator:{activation.activated_by}",
            actor=activation.actor,
        )
        # Reviews and decisions of an earlier evaluation do not carry over.
        s.reviews, s.operator_decision, s.evaluation = [], None, None
        s.review_reminded = s.review_escalated = False
        s.evaluation_request, s.institution_report = None, None
        self.enter(Stage.EVALUATION, "activated from the resource pool")
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
        self.record(
            EventType.MANDATORY_LISTING_EXEMPTED,
            {"justification": exemption.justification},
            source=f"operator:{exemption.approved_by}",
            actor=exemption.actor,
        )
        workflow.upsert_search_attributes([sa.MANDATORY_LISTING_DUE.value_unset()])
        self.show_details()  # without the clock
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
        listing = rules.listing_of(self.state, bid.listing_id)
        if not self.first_delivery(bid.event_id):
            return
        if listing is None or self._on_another_exchange(listing, bid.exchange):
            reason = rules.listing_refusal(listing, bid.listing_id, bid.exchange)
            self._refuse_exchange_event("bid", bid, reason or "not this achievement's")
            return
        self.record(EventType.BID_RECEIVED, bid.model_dump(mode="json"), f"exchange:{bid.exchange}")

    @workflow.signal(description="The exchange reports a closed deal; the first deal wins.")
    def exchange_deal(self, deal: Deal) -> None:
        s = self.state
        if not self.first_delivery(deal.event_id):
            return
        listing = rules.listing_of(s, deal.listing_id)
        if listing is not None and self._on_another_exchange(listing, deal.exchange):
            reason = f"the listing is on {listing.exchange}, not {deal.exchange}"
            self._refuse_deal(deal, reason)
            return
        if rules.deal_ignored(s, listing):
            workflow.logger.warning("Deal on %s ignored in stage %s", deal.listing_id, s.stage)
            self._refuse_exchange_event("deal", deal, rules.deal_ignored_reason(s, listing))
            return
        assert listing is not None
        refusal = rules.deal_refusal(s, listing, workflow.now())
        if refusal is not None:
            self._refuse_deal(deal, refusal)
            return
        s.deal = deal
        s.deal_accepted_at = workflow.now()
        for i, item in enumerate(s.listings):
            if item.listing_id == deal.listing_id:
                s.listings[i] = item.model_copy(update={"status": ListingStatus.DEALT})
        self.record(
            EventType.DEAL_CLOSED,
            {**deal.model_dump(mode="json"), "accepted": True},
            f"exchange:{deal.exchange}",
        )

    def _refuse_deal(self, deal: Deal, reason: str) -> None:
        self.record(
            EventType.DEAL_CLOSED,
            {**deal.model_dump(mode="json"), "accepted": False, "reason": reason},
            f"exchange:{deal.exchange}",
        )
        # The exchange took the deal and closed the listing: it must hear of the refusal, or
        # the listing stays closed there while this lifecycle waits on it. No I/O here: the
        # transaction stage makes the call.
        if patches.deals_refused_on_exchange():
            self.state.deals_to_reject.append(DealRejection(deal=deal, reason=reason))

    @workflow.signal(description="The exchange reports an instalment paid by the buyer.")
    def exchange_payment(self, payment: Payment) -> None:
        s = self.state
        if not self.first_delivery(payment.event_id):
            return
        listing = rules.listing_of(s, payment.listing_id)
        if self._on_another_exchange(listing, payment.exchange):
            reason = rules.listing_refusal(listing, payment.listing_id, payment.exchange)
            self._refuse_exchange_event("payment", payment, reason or "another exchange's")
            return
        check = rules.payment_check(s, payment)
        if check is not rules.PaymentCheck.APPLY:
            workflow.logger.warning("Payment for %s ignored: %s", payment.listing_id, check.value)
            self._refuse_exchange_event(
                "payment", payment, rules.payment_refusal(s, payment, check)
            )
            return
        # Payments recorded before the team's share rounded up replay with half-up rounding.
        rounds_up = patches.team_share_rounds_up()
        part = rules.institution_part(s, payment.paid_at)
        # Item 3: the team's own part is the team's; gated only where ownership changes the split,
        # so payments recorded before it (and every institution-owned one) replay unchanged.
        split = part if part != 1 and patches.ownership_splits_income() else Decimal(1)
        # Items 6 and 7: a broker's fee is a cost taken before the split; gated only where a
        # deal carries one (no recorded history has such a deal).
        fee_due = rules.service_fee_due(s)
        if not (fee_due > 0 and patches.brokerage_fee_deducted()):
            fee_due = Decimal("0.00")
        distribution = Distribution.of(
            payment, s.policy, team_rounds_up=rounds_up, institution_part=split, fee_due=fee_due
        )
        s.payments.append(
            RecordedPayment(payment=payment, distribution=distribution, received_at=workflow.now())
        )
        self.record(
            EventType.PAYMENT_RECEIVED,
            {
                **payment.model_dump(mode="json"),
                "distribution": distribution.model_dump(mode="json"),
            },
            f"exchange:{payment.exchange}",
        )
        # Paid: nobody need chase the buyer any more. Settled here, with the payment's event,
        # so the projection row (written with the next events) says so as the UI does.
        # (As the stage counts it: as many payments as the overdue instalment's number.)
        w = s.waiting
        overdue = w is not None and w.attention_reason is AttentionReason.PAYMENT_OVERDUE
        if overdue and len(s.payments) >= max(s.overdue_instalments, default=0):
            self.mark_attention(None)

    def _on_another_exchange(self, listing: Listing | None, exchange: str) -> bool:
        """An exchange speaks only for its own listings (the gateway checked who signed).

        Gated only where it bites: a recorded history never had such an event, so replay never
        reaches the patch call, and running lifecycles take the check from their next event.
        """
        if rules.on_another_exchange(listing, exchange) and patches.exchange_owns_its_listings():
            assert listing is not None
            workflow.logger.warning(
                "Event of %s for listing %s on another exchange refused",
                exchange,
                listing.listing_id,
            )
            return True
        return False

    @workflow.signal(
        name=POC_PROGRESS_SIGNAL,
        description="The proof-of-concept child reports the grant, a milestone reported or "
        "a milestone overdue, as it happens; each is recorded once as an event.",
    )
    def poc_progress(self, progress: PocProgress) -> None:
        # Gated: a history that holds this signal from before the patch (a new child beside an
        # old worker) replays as it ran, without recording it.
        if not patches.poc_progress_recorded() or not self.first_delivery(progress.event_id):
            return
        s = self.state
        s.poc_application_number = progress.application_number
        s.poc_granted_amount = progress.granted_amount
        type, payload, source, recorded = rules.poc_progress_event(progress)
        if recorded is not None:
            if recorded in s.poc_recorded:
                return
            s.poc_recorded.append(recorded)
        self.record(type, payload, source, at=progress.occurred_at)
        self._poc_attention(progress)

    def _poc_attention(self, progress: PocProgress) -> None:
        """A milestone overdue needs a person (the team reports it to the fund) until a report
        comes; the proof of concept's end settles it too (its stage is left)."""
        s = self.state
        if s.stage is not Stage.PROOF_OF_CONCEPT or s.waiting is None:
            return
        overdue = s.waiting.attention_reason is AttentionReason.POC_MILESTONE_OVERDUE
        if progress.kind is PocProgressKind.MILESTONE_OVERDUE and not overdue:
            self.mark_attention((AttentionReason.POC_MILESTONE_OVERDUE, progress.occurred_at))
        elif progress.kind is PocProgressKind.MILESTONE_REPORTED and overdue:
            self.mark_attention(None)

    def _refuse_exchange_event(self, type: str, event: Bid | Deal | Payment, reason: str) -> None:
        """An exchange's event not applied: recorded with its reason (gated: lifecycles recorded
        before it only logged these or ignored them)."""
        if patches.external_events_refused():
            source = f"exchange:{event.exchange}"
            self.refuse(type, event.event_id, source, reason, event.model_dump(mode="json"))

    @workflow.signal(description="The exchange reports that a listing expired.")
    def listing_expired(self, expired: ListingExpired) -> None:
        s = self.state
        if not self.first_delivery(expired.event_id):
            return
        listing = rules.listing_of(s, expired.listing_id)
        refusal = rules.expiry_refusal(listing, expired.listing_id, expired.exchange)
        if refusal is not None and patches.external_events_refused():
            source = f"exchange:{expired.exchange}"
            event = expired.model_dump(mode="json")
            self.refuse("listing_expired", expired.event_id, source, refusal, event)
            return
        for i, item in enumerate(s.listings):
            if item.listing_id == expired.listing_id and item.status is ListingStatus.OPEN:
                if self._on_another_exchange(item, expired.exchange):
                    return
                s.listings[i] = item.model_copy(update={"status": ListingStatus.EXPIRED})
                if patches.expired_listings():
                    self.record(
                        EventType.LISTING_EXPIRED,
                        {"exchange": item.exchange, "listing_id": item.listing_id},
                        f"exchange:{expired.exchange}",
                    )
                    self.note_if_lapsed()

    def _incubating(self, what: str, event: CompanyFounded | HeldIncubatorEvent) -> bool:
        """Whether incubator events count now; one that does not is refused (gated: lifecycles
        recorded before only logged it, unmarked, hoping for a redelivery that never came)."""
        s = self.state
        ok = rules.incubator_accepts(s)
        if not ok:
            if patches.external_events_refused():
                if self.first_delivery(event.event_id):
                    reason = rules.incubator_refusal(s)
                    self.refuse(
                        what, event.event_id, "incubator", reason, event.model_dump(mode="json")
                    )
            else:
                workflow.logger.warning("Incubator event %s ignored in stage %s", what, s.stage)
        return ok

    def _refuse_incubator_event(
        self, what: str, event: CompanyFounded | HeldIncubatorEvent, reason: str
    ) -> None:
        if patches.external_events_refused():
            self.refuse(what, event.event_id, "incubator", reason, event.model_dump(mode="json"))

    def _hold_incubator_event(self, event: HeldIncubatorEvent) -> None:
        """An incubator event before the company exists: kept, and applied once it is founded
        (or refused when incubation ends without one). Lifecycles recorded before this left it
        unmarked and dropped it."""
        if patches.incubator_events_held() and self.first_delivery(event.event_id):
            self.state.held_incubator_events.append(event)
            workflow.logger.info("Incubator event %s held until the company", event.event_id)

    def _apply_held_incubator_events(self) -> None:
        """Once the company exists, the events that came before it, in their order."""
        s = self.state
        held, s.held_incubator_events = s.held_incubator_events, []
        for event in held:
            if isinstance(event, IncubatorAdmission):
                self._admit(event)
            elif isinstance(event, IncubationMilestone):
                self._reach_milestone(event)
            else:
                self._exit(event)

    def _admit(self, admission: IncubatorAdmission) -> None:
        s = self.state
        if s.incubator is None:
            s.incubator = admission
            self.record(
                EventType.INCUBATOR_ADMITTED, admission.model_dump(mode="json"), "incubator"
            )
        else:
            reason = f"the company is already admitted to {s.incubator.incubator}"
            self._refuse_incubator_event("incubator_admitted", admission, reason)

    def _reach_milestone(self, milestone: IncubationMilestone) -> None:
        self.state.incubation_milestones.append(milestone)
        self.record(EventType.INCUBATION_MILESTONE, milestone.model_dump(mode="json"), "incubator")

    def _exit(self, exit: IncubationExit) -> None:
        s = self.state
        if s.incubation_exit is None:
            s.incubation_exit = exit
            self.record(EventType.INCUBATION_EXITED, exit.model_dump(mode="json"), "incubator")
        else:
            reason = f"the company already exited ({s.incubation_exit.kind.value})"
            self._refuse_incubator_event("incubation_exit", exit, reason)

    @workflow.signal(description="The incubator reports that the company was founded.")
    def company_founded(self, company: CompanyFounded) -> None:
        s = self.state
        if self._incubating("company_founded", company) and self.first_delivery(company.event_id):
            if s.company is None:
                s.company = company
                self.record(EventType.COMPANY_FOUNDED, company.model_dump(mode="json"), "incubator")
                self._apply_held_incubator_events()
            else:
                reason = f"the company {s.company.company_name} is already founded"
                self._refuse_incubator_event("company_founded", company, reason)

    @workflow.signal(description="An incubator or science park admits the company.")
    def incubator_admitted(self, admission: IncubatorAdmission) -> None:
        if not self._incubating("incubator_admitted", admission):
            return
        if self.state.company is None:
            self._hold_incubator_event(admission)
        elif self.first_delivery(admission.event_id):
            self._admit(admission)

    @workflow.signal(description="The incubator reports a financing round, product or revenue.")
    def incubation_milestone(self, milestone: IncubationMilestone) -> None:
        if not self._incubating("incubation_milestone", milestone):
            return
        if self.state.company is None:
            self._hold_incubator_event(milestone)
        elif self.first_delivery(milestone.event_id):
            self._reach_milestone(milestone)

    @workflow.signal(description="The incubator reports the exit of the company.")
    def incubation_exit(self, exit: IncubationExit) -> None:
        if not self._incubating("incubation_exit", exit):
            return
        if self.state.company is None:
            self._hold_incubator_event(exit)
        elif self.first_delivery(exit.event_id):
            self._exit(exit)

    @workflow.signal(
        description="An outside event no other signal takes (a registry notice, a PoC-fund "
        "report with no proof of concept running): recorded as refused, with the reason."
    )
    def external_event(self, event: ExternalEvent) -> None:
        if self.first_delivery(event.event_id) and patches.external_events_refused():
            reason = rules.external_event_refusal(self.state, event)
            self.refuse(event.type, event.event_id, event.system, reason, event.details or None)
