"""The transaction stage (plan items 8, 10, 11): listing on the exchanges with one publicity
clock, the first deal winning, refused deals refused on the exchange too, re-listing after
expiry, the contract, and the instalments. Part of the lifecycle's stages (stages.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    import workflows.rules as rules
    from activities.exchange import ExchangeActivities
    from activities.fund import FundActivities
    from activities.registry import RegistryActivities
    from schemas.events import EventType
    from schemas.exchange_api import (
        CreateListingRequest,
        RejectDealRequest,
        WithdrawListingRequest,
    )
    from schemas.fund import FundAccrual
    from schemas.lifecycle import AttentionReason, Stage
    from schemas.registry_api import RegisterContractRequest
    from schemas.transaction import ContractRegistration, Deal, Listing, ListingStatus
    from workflows.options import PROJECTION_RETRY, PROJECTION_TIMEOUT

# The lifecycle's own modules run in the sandbox (its protection of our code is kept).
from workflows.lifecycle import details
from workflows.lifecycle.engine import LifecycleEngine


class TransactionStage(LifecycleEngine):
    """The transaction stage and the moves on listings other stages make too."""

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
            # The end of publicity is no deadline (a deal may come any time after it): it is
            # said in words, and the wait has no `until` that could read as overdue.
            publicity = max((x.publicity_ends_at for x in rules.current_listings(s)), default=None)
            self.show_waiting(
                "a deal on the exchange"
                + (f" (publicity until {publicity:%Y-%m-%d %H:%M} UTC)" if publicity else ""),
                next_action=details.next_action(
                    s.achievement_id, details.SYSTEM_EVENT, who="the exchange's webhook"
                ),
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
        await self._accrue_to_fund()
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
            paid = details.next_action(
                s.achievement_id, details.SYSTEM_EVENT, who="the exchange's webhook"
            )
            self.show_waiting(
                f"instalment {instalment} of {deal.instalments}", due, next_action=paid
            )

            def paid_up(n: int = instalment) -> bool:
                return len(s.payments) >= n

            if await self._transaction_wait(paid_up, until=due):
                await self._accrue_to_fund()
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
            self.show_waiting(
                f"overdue instalment {instalment} of {deal.instalments}",
                due,
                next_action=f"{paid}; an officer chases the buyer, or gives up: "
                + details.WITHDRAW.text(s.achievement_id),
                attention=(AttentionReason.PAYMENT_OVERDUE, due),
            )
            await self._transaction_wait(paid_up)
            await self._accrue_to_fund()

    async def _accrue_to_fund(self) -> None:
        """Send each recorded payment's fund share to the institution's transfer fund (plan
        item 4), once per payment here and idempotent there by the payment's key, so a retried
        activity or a replay never accrues twice. Gated (decided at run start): lifecycles
        recorded before the fund existed keep not sending."""
        s = self.state
        if not patches.fund_accruals():
            return
        for recorded in s.payments:
            payment = recorded.payment
            if payment.event_id in s.fund_accrued:
                continue
            await workflow.execute_activity_method(
                FundActivities.accrue,
                args=[
                    FundAccrual(
                        institution=s.disclosure.institution.code,
                        achievement_id=s.achievement_id,
                        payment_event_id=payment.event_id,
                        amount=recorded.distribution.tto_fund,
                        paid_at=payment.paid_at,
                        actor=f"lifecycle:{s.workflow_id}",
                    ),
                    s.policy.jurisdiction,
                ],
                start_to_close_timeout=PROJECTION_TIMEOUT,
                retry_policy=PROJECTION_RETRY,
            )
            s.fund_accrued.append(payment.event_id)

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

    def _hold_as_resource(self, reason: str) -> None:
        self.enter(Stage.RESOURCE, reason)
        self.record(EventType.HELD_AS_RESOURCE, {"reason": reason})
