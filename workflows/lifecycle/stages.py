"""The lifecycle's stages: what each one does, from the state alone, so any wait may end the run
with continue-as-new and the next run picks up at the same point. The rules they apply are in
workflows/rules.py; how they wait and record is the engine's (engine.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ChildWorkflowHandle

with workflow.unsafe.imports_passed_through():
    from activities.exchange import ExchangeActivities
    from activities.registry import RegistryActivities
    from schemas.commands import Withdrawal
    from schemas.evaluation import EvaluationOutcome, Recommendation
    from schemas.events import EventType
    from schemas.exchange_api import (
        CreateListingRequest,
        RejectDealRequest,
        SearchRequest,
        WithdrawListingRequest,
    )
    from schemas.incubation import EquityRegistration
    from schemas.lifecycle import Stage
    from schemas.proof_of_concept import PocInput, PocResult
    from schemas.registry_api import (
        LifecycleReportRequest,
        PocCancellationRequest,
        RegisterAchievementRequest,
        RegisterContractRequest,
        RegisterEquityRequest,
    )
    from schemas.transaction import ContractRegistration, Deal, Listing, ListingStatus
    from workflows import patches, rules
    from workflows.ids import poc_child_id
    from workflows.lifecycle.engine import Interrupt, LifecycleEngine, WithdrawalRequested
    from workflows.proof_of_concept import ProofOfConcept


class LifecycleStages(LifecycleEngine):
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
        self.show_waiting("an activation with transformation modes (dormant scientific resource)")
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

        def decided() -> bool:
            return len(s.reviews) >= policy.reviewer_count or s.operator_decision is not None

        started = s.stage_since() or workflow.now()
        reminder_at = started + policy.review_sla
        escalation_at = reminder_at + policy.review_escalation_grace
        if not s.review_reminded:
            self.show_waiting(
                f"{policy.reviewer_count - len(s.reviews)} expert review(s)", reminder_at
            )
            if not await self.wait_until(decided, until=reminder_at):
                s.review_reminded = True
                self.record(EventType.REVIEW_REMINDER, self._missing())
        if not decided() and not s.review_escalated:
            self.show_waiting(
                f"the {policy.reviewer_count - len(s.reviews)} remaining expert review(s)"
                " after a reminder",
                escalation_at,
            )
            if not await self.wait_until(decided, until=escalation_at):
                s.review_escalated = True
                self.record(EventType.REVIEW_ESCALATED, self._missing())
        if not decided():
            self.show_waiting("an operator's routing decision (review SLA escalated)")
            await self.wait_until(decided)
        self._route()

    async def _proof_of_concept(self) -> None:
        s = self.state
        if s.poc is None:
            self.show_waiting("the proof-of-concept fund: milestones and the go/no-go gate")
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

    async def _transaction(self) -> None:
        s = self.state
        await self._list_on_exchanges(mandatory=s.mandatory_listing_triggered)
        while s.deal is None:
            await self._reject_refused_deals()
            if s.deal is not None:
                break
            if s.listings_lapsed_at is not None:
                if not await self._relist_when_due():
                    return  # held as a resource
                await self._list_on_exchanges(mandatory=s.mandatory_listing_triggered)
                continue
            self.show_waiting(
                "a deal on the exchange (publicity period first)",
                max((x.publicity_ends_at for x in rules.current_listings(s)), default=None),
            )
            # Refused deals and lapsed listings exist only on the gated paths.
            await self.wait_until(
                lambda: (
                    s.deal is not None
                    or bool(s.deals_to_reject)
                    or s.listings_lapsed_at is not None
                )
            )
        await self._reject_refused_deals()
        await self._withdraw_listings(f"dealt on {s.deal.exchange}", keep=s.deal.listing_id)
        if s.contract is None:
            d = s.deal
            registration = await self.call_system(
                "registry",
                RegistryActivities.register_contract,
                [
                    self.idempotency_key("register-contract"),
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
            self.record(
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
            self.enter(Stage.INCUBATION, "contract paid; founding a company")
        else:
            self.enter(Stage.REPORTING, "contract fully paid")

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
            self.show_waiting(f"instalment {instalment} of {deal.instalments}", due)

            def paid_up(n: int = instalment) -> bool:
                return len(s.payments) >= n

            if await self._transaction_wait(paid_up, until=due):
                continue
            if instalment not in s.overdue_instalments:
                s.overdue_instalments.append(instalment)
                self.record(
                    EventType.PAYMENT_OVERDUE, {"instalment": instalment, "due": due.isoformat()}
                )
            # Overdue now, or already before a continue-as-new: wait without a deadline. (It
            # used to wait only when it had just recorded the overdue, so a run continued while
            # waiting looped on the passed deadline without yielding. No history holds that path:
            # the loop never completed a workflow task, so no gate is needed.)
            self.show_waiting(f"overdue instalment {instalment} of {deal.instalments}")
            await self._transaction_wait(paid_up)

    async def _transaction_wait(
        self, condition: Callable[[], bool], until: datetime | None = None
    ) -> bool:
        """`wait_until`, telling the exchange of each deal refused meanwhile (a late deal on
        another listing while payments come in): handlers do no I/O, so the stage does."""
        s = self.state
        while True:
            await self._reject_refused_deals()
            held = await self.wait_until(lambda: condition() or bool(s.deals_to_reject), until)
            if not s.deals_to_reject:
                return held

    async def _reject_refused_deals(self) -> None:
        """Refuse on the exchange every deal refused here, so its listing is open again there;
        after a rejection the listing's status is the exchange's."""
        s = self.state
        reopened = False
        while s.deals_to_reject:
            refusal = s.deals_to_reject[0]
            deal = refusal.deal
            payload: dict[str, Any] = {
                "exchange": deal.exchange,
                "listing_id": deal.listing_id,
                "deal_id": deal.event_id,
                "reason": refusal.reason,
            }
            status: ListingStatus | None = None
            try:
                answer = await self.call_system(
                    "exchange",
                    ExchangeActivities.reject_deal,
                    [
                        self.idempotency_key(
                            f"reject/{deal.exchange}/{deal.listing_id}/{deal.event_id}"
                        ),
                        deal.exchange,
                        deal.listing_id,
                        deal.event_id,
                        RejectDealRequest(reason=refusal.reason[:500]),
                    ],
                )
                status = answer.status
                payload |= {"rejected": True, "listing_status": status.value}
            except ActivityError as err:
                # Refused for good (e.g. no such listing on that exchange): record it for an
                # operator instead of failing the whole lifecycle.
                if not isinstance(err.cause, ApplicationError) or not err.cause.non_retryable:
                    raise
                payload |= {"rejected": False, "refused": err.cause.message}
                workflow.logger.warning("Rejection of deal %s refused", deal.event_id)
            del s.deals_to_reject[0]
            if status is not None:
                reopened |= self._take_listing_status(deal, status)
            self.record(EventType.DEAL_REJECTED, payload, "workflow")
        if reopened and s.deal is not None:
            # Open again on the exchange, while another deal won: withdraw it now.
            await self._withdraw_listings(f"dealt on {s.deal.exchange}", keep=s.deal.listing_id)

    def _take_listing_status(self, deal: Deal, status: ListingStatus) -> bool:
        """Our listing's status as the exchange answered; whether it is open again."""
        s = self.state
        listing = rules.listing_of(s, deal.listing_id)
        if listing is None or listing.exchange != deal.exchange:
            return False
        if s.deal is not None and s.deal.listing_id == listing.listing_id:
            return False  # the deal that won stands
        s.listings[s.listings.index(listing)] = listing.model_copy(update={"status": status})
        self.note_if_lapsed()
        return status is ListingStatus.OPEN

    def note_if_lapsed(self) -> None:
        """Mark the moment every current listing closed without a deal (the stage re-lists)."""
        s = self.state
        if s.listings_lapsed_at is None and rules.listings_lapsed(s):
            s.listings_lapsed_at = workflow.now()

    async def _relist_when_due(self) -> bool:
        """Every listing lapsed: list again `relist_after` later, up to `relist_times`, then
        hold as a resource. Whether the transaction goes on (False: held as a resource)."""
        s, policy = self.state, self.state.policy
        lapsed_at = s.listings_lapsed_at
        assert lapsed_at is not None
        # The mandatory-listing clock is armed again while nothing is on the market.
        workflow.upsert_search_attributes(rules.search_attributes(s))
        if s.relisted >= policy.relist_times:
            rounds = s.relisted + 1
            self._new_listing_round()
            s.relisted = 0
            self._hold_as_resource(
                f"every listing expired without a deal ({rounds} round(s) of listings)"
            )
            return False
        relist_at = lapsed_at + policy.relist_after
        self.show_waiting(
            f"re-listing {s.relisted + 1} of {policy.relist_times}: every listing expired",
            relist_at,
        )
        if not await self._transaction_wait(lambda: s.deal is not None, until=relist_at):
            s.relisted += 1
            self._new_listing_round()
        return True

    def _new_listing_round(self) -> None:
        s = self.state
        s.listing_round += 1
        s.listings_lapsed_at = None

    async def _incubation(self) -> None:
        s = self.state
        if s.company is None:
            self.show_waiting("the company to be founded")
            await self.wait_until(lambda: s.company is not None)
        assert s.company is not None
        if s.equity is None:
            c = s.company
            state_owned = s.disclosure.institution.state_owned
            # Item 3: the team's part of the equity follows ownership, as income does; gated
            # only where ownership gives the team a part, so other lifecycles replay unchanged.
            team_share: Decimal | None = None
            if rules.institution_part(s, c.founded_at) != 1 and patches.equity_follows_ownership():
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
            self.record(EventType.EQUITY_REGISTERED, payload, source="registry")
        if s.incubation_exit is None:
            self.show_waiting("incubation milestones and the exit")
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

    async def _list_on_exchanges(self, mandatory: bool) -> None:
        s = self.state
        listed = {x.exchange for x in rules.current_listings(s)}
        for exchange in s.exchanges:
            if exchange in listed:
                continue
            # A deal may close on an earlier exchange while a later listing is still being
            # retried: list no further. Gated: running lifecycles keep their recorded path.
            if s.deal is not None and patches.no_listing_after_deal():
                break
            # One clock with the exchange: it is told the exact end of publicity and its answer
            # (the original one, when a retried call is replayed) is the listing's own clock.
            # Gated: lifecycles recorded before keep their own clock.
            one_clock = patches.exchange_publicity_clock()
            ends_at = workflow.now() + s.policy.publicity_period
            days = max(0, round(s.policy.publicity_period / timedelta(days=1)))
            step = f"listing/{exchange}"
            if s.listing_round:
                step += f"/round-{s.listing_round}"
            response = await self.call_system(
                "exchange",
                ExchangeActivities.create_listing,
                [
                    self.idempotency_key(step),
                    exchange,
                    CreateListingRequest(
                        achievement_id=s.achievement_id,
                        title=s.disclosure.title,
                        field=s.disclosure.field,
                        seller_institution=s.disclosure.institution.code,
                        asking_price=s.asking_price,
                        pricing=s.pricing,
                        publicity_ends_at=ends_at if one_clock else None,
                        publicity_days=None if one_clock else days,
                        mandatory=mandatory,
                    ),
                ],
            )
            listing = Listing(
                exchange=exchange,
                listing_id=response.listing_id,
                status=ListingStatus.OPEN,
                asking_price=s.asking_price,
                pricing=s.pricing,
                listed_at=response.listed_at if one_clock else workflow.now(),
                publicity_ends_at=response.publicity_ends_at
                if one_clock
                else workflow.now() + s.policy.publicity_period,
                mandatory=mandatory,
                listing_round=s.listing_round,
            )
            s.listings.append(listing)
            self.record(EventType.LISTED, listing.model_dump(mode="json"), "exchange")

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
                await self.call_system(
                    "exchange",
                    ExchangeActivities.withdraw_listing,
                    [
                        self.idempotency_key(f"withdraw/{listing.exchange}/{listing.listing_id}"),
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
            self.record(EventType.LISTING_WITHDRAWN, payload, "workflow")

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
                reason="abandoned after evaluation", requested_by="expert panel", abandon=True
            )
            self.enter(Stage.REPORTING, "abandoned after evaluation")

    def _enter_after_maturity(self, note: str) -> None:
        if set(self.state.modes) & rules.CONTRACT_MODES:
            self.enter(Stage.TRANSACTION, note)
        else:
            self.enter(Stage.INCUBATION, note)

    def _hold_as_resource(self, reason: str) -> None:
        self.enter(Stage.RESOURCE, reason)
        self.record(EventType.HELD_AS_RESOURCE, {"reason": reason})

    def _missing_reviewers(self) -> list[str]:
        done = {r.reviewer_id for r in self.state.reviews}
        return [r for r in self.state.reviewers if r not in done]

    def _missing(self) -> dict[str, Any]:
        """Who has not reviewed, and (recorded since the patch) how many reviews are missing:
        without an assigned panel the names are unknown, the count is not."""
        if patches.evaluation_in_plain_words():
            return rules.missing_reviews(self.state)
        return {"missing": self._missing_reviewers()}
