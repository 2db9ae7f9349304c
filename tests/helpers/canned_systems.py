"""The fast layer's outside world: the real workflows on a worker whose activities are canned.

The registry and exchange answer from bench/canned.py (the same canned activities the
benchmarks measure orchestration with), under the real activity names and on the real task
queues; the projection keeps in memory the events each lifecycle hands it, and the exchange
counts the withdrawals and deal rejections it is asked for and keeps each listing call's request
and answer. No HTTP, no PostgreSQL: a lifecycle's rules run on the time-skipping server in a
fraction of a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from bench import canned
from helpers.eventually import assert_eventually
from helpers.lifecycle import end_if_open
from schemas.events import LifecycleEvent
from schemas.exchange_api import (
    CreateListingRequest,
    ListingResponse,
    RejectDealRequest,
    WithdrawListingRequest,
)
from schemas.fund import FundAccrual
from schemas.registry_api import (
    AchievementRegistration,
    PocCancellationRequest,
    PocCancellationResponse,
    RegisterAchievementRequest,
)
from schemas.transaction import ListingStatus
from schemas.views import AchievementView
from workers.worker import WORKFLOWS, WorkerGroup, cache_workflow_bytecode
from workflows.lifecycle import AchievementLifecycle


class CannedSystems:
    """Canned registry and exchange, and a projection that remembers; one per test."""

    def __init__(self) -> None:
        # Every lifecycle that registered: each does first, so none is missed at the end.
        self.lifecycles: set[str] = set()
        self.events: list[LifecycleEvent] = []
        self._event_ids: set[str] = set()
        # (exchange, listing id) -> calls: the exchange must be asked once, not once per event.
        self.withdrawals: Counter[tuple[str, str]] = Counter()
        # (idempotency key, application number) -> calls: what the fund was told, and how often.
        self.poc_cancellations: Counter[tuple[str, str]] = Counter()
        # (exchange, listing id, deal id) -> calls.
        self.rejections: Counter[tuple[str, str, str]] = Counter()
        # Each listing call: (idempotency key, request, answer).
        self.listing_calls: list[tuple[str, CreateListingRequest, ListingResponse]] = []
        # Accrual key -> calls: what the transfer fund was sent, and how often.
        self.fund_accruals: Counter[str] = Counter()
        self.fund_amounts: dict[str, Decimal] = {}

    @activity.defn(name="fund.accrue")
    async def accrue_to_fund(self, accrual: FundAccrual, jurisdiction: str) -> None:
        self.fund_accruals[accrual.key] += 1
        self.fund_amounts[accrual.key] = accrual.amount

    # Under the real names, so the workflows schedule them exactly as in production.

    @activity.defn(name="registry.register_achievement")
    async def register_achievement(
        self, key: str, request: RegisterAchievementRequest
    ) -> AchievementRegistration:
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None  # a workflow's activity, never a standalone one
        self.lifecycles.add(workflow_id)
        return await canned.register_achievement(key, request)

    @activity.defn(name="projection.record_events")
    async def record_events(self, events: list[LifecycleEvent], view: AchievementView) -> int:
        return sum([await self.record_event(e, view) for e in events])

    @activity.defn(name="projection.record_event")
    async def record_event(self, event: LifecycleEvent, view: AchievementView) -> bool:
        # Each event once, by its id, as the real projection's ON CONFLICT (event_id): a local
        # activity is at least once, and runs again when its workflow task is lost (it is, at
        # times, when a run continues as new).
        if event.event_id in self._event_ids:
            return False
        self._event_ids.add(event.event_id)
        self.events.append(event)
        return True

    @activity.defn(name="exchange.withdraw_listing")
    async def withdraw_listing(
        self, key: str, exchange: str, listing_id: str, request: WithdrawListingRequest
    ) -> ListingResponse:
        self.withdrawals[(exchange, listing_id)] += 1
        return await canned.withdraw_listing(key, exchange, listing_id, request)

    @activity.defn(name="registry.cancel_poc_application")
    async def cancel_poc_application(
        self, key: str, application_number: str, request: PocCancellationRequest
    ) -> PocCancellationResponse:
        self.poc_cancellations[(key, application_number)] += 1
        return await canned.cancel_poc_application(key, application_number, request)

    @activity.defn(name="exchange.create_listing")
    async def create_listing(
        self, key: str, exchange: str, request: CreateListingRequest
    ) -> ListingResponse:
        answer = await canned.create_listing(key, exchange, request)
        self.listing_calls.append((key, request, answer))
        return answer

    @activity.defn(name="exchange.reject_deal")
    async def reject_deal(
        self, key: str, exchange: str, listing_id: str, deal_id: str, request: RejectDealRequest
    ) -> ListingResponse:
        """Open again, unless the lifecycle withdrew the listing here (as a real exchange)."""
        self.rejections[(exchange, listing_id, deal_id)] += 1
        answer = await canned.reject_deal(key, exchange, listing_id, deal_id, request)
        if self.withdrawals[(exchange, listing_id)]:
            return answer.model_copy(update={"status": ListingStatus.WITHDRAWN})
        return answer

    # What the lifecycle tried to record.

    def types(self) -> list[str]:
        """The types of the events handed to the projection, in order."""
        return [e.type.value for e in self.events]

    def payloads(self, type: str) -> list[dict[str, Any]]:
        """The payloads of the events of one type, in order."""
        return [e.payload for e in self.events if e.type.value == type]

    async def recorded(self, type: str, count: int = 1) -> list[dict[str, Any]]:
        """The payloads of `type` once `count` of them are recorded: for events a signal
        causes, which the state may not show (a refused deal leaves the state as it was)."""

        async def enough() -> list[dict[str, Any]]:
            payloads = self.payloads(type)
            assert len(payloads) >= count, f"{len(payloads)} {type}; recorded: {self.types()}"
            return payloads

        return await assert_eventually(enough, within=10, what=f"{count} {type} event(s)")

    # The worker.

    def worker(
        self, client: Client, task_queue: str, interceptors: Sequence[Interceptor] = ()
    ) -> WorkerGroup:
        """The real workflows, with the task queues of workers.worker.build_worker: the main
        queue (workflows, every activity, the projection as a local activity) and one queue per
        external system."""
        cache_workflow_bytecode()  # the sandbox re-imports the workflow modules for every run
        registry: list[Callable[..., Any]] = [
            self.register_achievement,
            self.cancel_poc_application,
            *(
                a
                for a in canned.REGISTRY
                if a not in (canned.register_achievement, canned.cancel_poc_application)
            ),
        ]
        exchange: list[Callable[..., Any]] = [
            canned.search,
            self.create_listing,
            self.withdraw_listing,
            self.reject_deal,
        ]
        main: list[Callable[..., Any]] = [
            *registry,
            *exchange,
            self.record_events,
            self.record_event,
            self.accrue_to_fund,
        ]
        return WorkerGroup(
            Worker(
                client,
                task_queue=task_queue,
                workflows=list(WORKFLOWS),
                activities=main,
                interceptors=interceptors,
            ),
            Worker(client, task_queue=f"{task_queue}-registry", activities=registry),
            Worker(client, task_queue=f"{task_queue}-exchange", activities=exchange),
        )

    @asynccontextmanager
    async def serving(
        self, client: Client, task_queue: str, interceptors: Sequence[Interceptor] = ()
    ) -> AsyncIterator[WorkerGroup]:
        """The worker, running until every lifecycle of the test is closed.

        A test that fails midway leaves its lifecycle open. Once the worker is gone, the
        lifecycle's next timer gives the shared time-skipping server a workflow task nobody
        takes, and the server stops skipping time for every test after it: one failure would
        fail them all.
        """
        async with self.worker(client, task_queue, interceptors) as group:
            try:
                yield group
            finally:
                for workflow_id in sorted(self.lifecycles):
                    await end_if_open(
                        client.get_workflow_handle_for(AchievementLifecycle.run, workflow_id)
                    )
