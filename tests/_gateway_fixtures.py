"""Session fixtures of the gateway tests: a real Temporal dev server, an in-process worker with
the real workflows, and the gateway app over httpx's ASGI transport.

Load with pytest_plugins = ["_gateway_fixtures"]. The activities here are test doubles with the
real activity names: these tests are about the gateway's HTTP contract, and the real activities
against the sandboxes are covered by the integration tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
from pydantic import SecretStr
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from gateway.app import create_gateway_app
from schemas.evaluation import TechnologySearchResult
from schemas.events import LifecycleEvent
from schemas.exchange_api import (
    CreateListingRequest,
    ListingResponse,
    SearchRequest,
    WithdrawListingRequest,
)
from schemas.proof_of_concept import PocMilestone
from schemas.registry_api import (
    AchievementRegistration,
    LifecycleReportRequest,
    PocApplicationRequest,
    PocApplicationResponse,
    RegisterAchievementRequest,
    ReportReceipt,
)
from schemas.transaction import ListingStatus
from schemas.views import AchievementView
from workers.policy_book import PolicyBook
from workers.settings import Settings
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept

GATEWAY_SECRETS = {
    "exchange": "gw-test-exchange-secret",
    "registry": "gw-test-registry-secret",
    "incubator": "gw-test-incubator-secret",
    "poc-fund": "gw-test-poc-fund-secret",
}


@dataclass
class FakeSystems:
    """Test doubles of the registry, exchange and projection activities (same names)."""

    events: list[LifecycleEvent] = field(default_factory=list)

    @activity.defn(name="registry.register_achievement")
    async def register_achievement(
        self, key: str, request: RegisterAchievementRequest
    ) -> AchievementRegistration:
        return AchievementRegistration(
            registration_number=f"REG-{request.achievement_id}", registered_at=datetime.now(UTC)
        )

    @activity.defn(name="exchange.search")
    async def search(self, exchange: str, request: SearchRequest) -> TechnologySearchResult:
        return TechnologySearchResult(similar_listings=0, matching_demands=0)

    @activity.defn(name="exchange.create_listing")
    async def create_listing(
        self, key: str, exchange: str, request: CreateListingRequest
    ) -> ListingResponse:
        now = datetime.now(UTC)
        return ListingResponse(
            exchange=exchange,
            listing_id=listing_id(exchange, request.achievement_id),
            achievement_id=request.achievement_id,
            status=ListingStatus.OPEN,
            listed_at=now,
            publicity_ends_at=now + timedelta(days=request.publicity_days),
        )

    @activity.defn(name="exchange.withdraw_listing")
    async def withdraw_listing(
        self, key: str, exchange: str, listing_id: str, request: WithdrawListingRequest
    ) -> ListingResponse:
        now = datetime.now(UTC)
        return ListingResponse(
            exchange=exchange,
            listing_id=listing_id,
            achievement_id="unknown",
            status=ListingStatus.WITHDRAWN,
            listed_at=now,
            publicity_ends_at=now,
        )

    @activity.defn(name="registry.apply_for_poc")
    async def apply_for_poc(
        self, key: str, request: PocApplicationRequest
    ) -> PocApplicationResponse:
        due = (datetime.now(UTC) + timedelta(days=90)).date()
        return PocApplicationResponse(
            application_number=f"POC-{request.achievement_id}",
            granted_amount=Decimal("100000.00"),
            milestones=[PocMilestone(milestone_id="m1", title="prototype", due=due)],
        )

    @activity.defn(name="registry.submit_lifecycle_report")
    async def submit_lifecycle_report(
        self, key: str, request: LifecycleReportRequest
    ) -> ReportReceipt:
        return ReportReceipt(
            receipt_number=f"RPT-{request.achievement_id}", received_at=datetime.now(UTC)
        )

    @activity.defn(name="projection.record_event")
    async def record_event(self, event: LifecycleEvent, view: AchievementView) -> bool:
        if any(e.event_id == event.event_id for e in self.events):
            return False
        self.events.append(event)
        return True

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.register_achievement,
            self.search,
            self.create_listing,
            self.withdraw_listing,
            self.apply_for_poc,
            self.submit_lifecycle_report,
            self.record_event,
        ]


def listing_id(exchange: str, achievement_id: str) -> str:
    return f"{exchange}-L-{achievement_id}"


@dataclass
class GatewayStack:
    client: Client
    settings: Settings
    http: httpx.AsyncClient
    systems: FakeSystems


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway_stack(
    dev_env: WorkflowEnvironment,
) -> AsyncIterator[GatewayStack]:
    client = dev_env.client
    # Own task queue: no other module's worker picks up these workflows.
    settings = Settings(
        task_queue=f"gateway-tests-{uuid.uuid4().hex[:8]}",
        exchange_webhook_secret=SecretStr(GATEWAY_SECRETS["exchange"]),
        registry_webhook_secret=SecretStr(GATEWAY_SECRETS["registry"]),
        incubator_webhook_secret=SecretStr(GATEWAY_SECRETS["incubator"]),
        poc_fund_webhook_secret=SecretStr(GATEWAY_SECRETS["poc-fund"]),
        metrics_port=0,
    )
    systems = FakeSystems()
    app = create_gateway_app(client, settings, PolicyBook.load())
    async with (
        Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[AchievementLifecycle, ProofOfConcept],
            activities=systems.all(),
        ),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30.0
        ) as http,
    ):
        yield GatewayStack(client=client, settings=settings, http=http, systems=systems)
