"""In-process activities under the engine's own names that return canned results: no HTTP and
no projection writes, to separate the cost of the external calls from the cost of orchestration.
The append only sends the real append's NOTIFY (`NotifyingProjection`), so the parties see the
same events as on the real path.

The fast workflow tests answer with them too (tests/helpers/canned_systems.py), so a canned
answer that changes here changes what those tests see.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity

from bench.events import Notifier
from schemas.evaluation import TechnologySearchResult
from schemas.events import LifecycleEvent
from schemas.exchange_api import (
    CreateListingRequest,
    ListingResponse,
    RejectDealRequest,
    SearchRequest,
    WithdrawListingRequest,
)
from schemas.fund import FundAccrual
from schemas.proof_of_concept import PocMilestone
from schemas.registry_api import (
    AchievementRegistration,
    AnnualReportRequest,
    ContractRegistrationResponse,
    EquityRegistrationResponse,
    LifecycleReportRequest,
    PocApplicationRequest,
    PocApplicationResponse,
    PocCancellationRequest,
    PocCancellationResponse,
    RegisterAchievementRequest,
    RegisterContractRequest,
    RegisterEquityRequest,
    ReportReceipt,
)
from schemas.transaction import ListingStatus
from schemas.views import AchievementView


def _now() -> datetime:
    return datetime.now(UTC)


@activity.defn(name="registry.register_achievement")
async def register_achievement(
    key: str, request: RegisterAchievementRequest
) -> AchievementRegistration:
    return AchievementRegistration(
        registration_number=f"REG-{request.achievement_id}", registered_at=_now()
    )


@activity.defn(name="registry.register_contract")
async def register_contract(
    key: str, request: RegisterContractRequest
) -> ContractRegistrationResponse:
    return ContractRegistrationResponse(
        certificate_number=f"TC-{request.achievement_id}",
        verified_amount=request.amount,
        tax_preference_eligible=True,
        registered_at=_now(),
    )


@activity.defn(name="registry.register_equity")
async def register_equity(key: str, request: RegisterEquityRequest) -> EquityRegistrationResponse:
    return EquityRegistrationResponse(
        equity_certificate=f"EQ-{request.achievement_id}",
        state_owned_equity=request.state_owned,
        registered_at=_now(),
    )


@activity.defn(name="registry.apply_for_poc")
async def apply_for_poc(key: str, request: PocApplicationRequest) -> PocApplicationResponse:
    # The applicant's schedule, as the registry plans it; none without one (the gate alone).
    start = request.applied_at or _now()
    return PocApplicationResponse(
        application_number=f"POC-{request.achievement_id}",
        granted_amount=Decimal("100000.00"),
        milestones=[
            PocMilestone(
                milestone_id=f"m{i}",
                title=f"Milestone {i}",
                due=(start + offset).date(),
                due_at=start + offset,
            )
            for i, offset in enumerate(request.milestone_offsets or [], start=1)
        ],
    )


@activity.defn(name="registry.cancel_poc_application")
async def cancel_poc_application(
    key: str, application_number: str, request: PocCancellationRequest
) -> PocCancellationResponse:
    return PocCancellationResponse(
        application_number=application_number,
        granted_amount=Decimal("100000.00"),
        cancelled_at=_now(),
        reason=request.reason,
    )


@activity.defn(name="registry.submit_lifecycle_report")
async def submit_lifecycle_report(key: str, request: LifecycleReportRequest) -> ReportReceipt:
    return ReportReceipt(receipt_number=f"RPT-{request.achievement_id}", received_at=_now())


@activity.defn(name="registry.submit_annual_report")
async def submit_annual_report(key: str, request: AnnualReportRequest) -> ReportReceipt:
    return ReportReceipt(receipt_number=f"ANN-{request.institution_code}", received_at=_now())


@activity.defn(name="exchange.search")
async def search(exchange: str, request: SearchRequest) -> TechnologySearchResult:
    return TechnologySearchResult(similar_listings=0, matching_demands=0)


@activity.defn(name="exchange.create_listing")
async def create_listing(key: str, exchange: str, request: CreateListingRequest) -> ListingResponse:
    now = _now()
    # As the exchange: the seller's exact end, or the older whole days from now.
    ends = request.publicity_ends_at or now + timedelta(days=request.publicity_days or 0)
    # A re-listing (key ".../listing/<exchange>/round-<n>") is a listing of its own.
    round_suffix = key.rsplit("/", 1)[-1] if "/round-" in key else ""
    return ListingResponse(
        exchange=exchange,
        listing_id="-".join(filter(None, ["L", request.achievement_id, exchange, round_suffix])),
        achievement_id=request.achievement_id,
        status=ListingStatus.OPEN,
        listed_at=now,
        publicity_ends_at=ends,
    )


def _listing_now(exchange: str, listing_id: str, status: ListingStatus) -> ListingResponse:
    """A listing's state as the exchange answers a withdrawal or a rejection."""
    now = _now()
    return ListingResponse(
        exchange=exchange,
        listing_id=listing_id,
        achievement_id=listing_id,
        status=status,
        listed_at=now,
        publicity_ends_at=now,
    )


@activity.defn(name="exchange.withdraw_listing")
async def withdraw_listing(
    key: str, exchange: str, listing_id: str, request: WithdrawListingRequest
) -> ListingResponse:
    return _listing_now(exchange, listing_id, ListingStatus.WITHDRAWN)


@activity.defn(name="exchange.reject_deal")
async def reject_deal(
    key: str, exchange: str, listing_id: str, deal_id: str, request: RejectDealRequest
) -> ListingResponse:
    return _listing_now(exchange, listing_id, ListingStatus.OPEN)


class NotifyingProjection:
    """The append as the benchmark's parties see it: one NOTIFY (bench/events.py), no rows."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    @activity.defn(name="projection.record_event")
    async def record_event(self, event: LifecycleEvent, view: AchievementView) -> bool:
        return await self.record_events([event], view) == 1

    @activity.defn(name="projection.record_events")
    async def record_events(self, events: list[LifecycleEvent], view: AchievementView) -> int:
        if events:
            await self._notifier.notify(view.workflow_id, view.stage, (e.type for e in events))
        return len(events)


@activity.defn(name="fund.accrue")
async def accrue_to_fund(accrual: FundAccrual, jurisdiction: str) -> None:
    """The institution's transfer fund takes the accrual (no fund workflow here)."""


REGISTRY: list[Callable[..., Any]] = [
    register_achievement,
    register_contract,
    register_equity,
    apply_for_poc,
    cancel_poc_application,
    submit_lifecycle_report,
    submit_annual_report,
]
EXCHANGE: list[Callable[..., Any]] = [search, create_listing, withdraw_listing, reject_deal]
MAIN: list[Callable[..., Any]] = [*REGISTRY, *EXCHANGE, accrue_to_fund]
"""With `NotifyingProjection(...).record_events` and `.record_event`, the main queue's."""
