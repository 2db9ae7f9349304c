"""The lifecycle worker: workflows and activities on one task queue, clients injected."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.exchange import ExchangeActivities
from activities.exchange_client import ExchangeClient
from activities.projections import ProjectionActivities
from activities.registry import RegistryActivities
from activities.registry_client import RegistryClient
from activities.reports import ReportActivities
from activities.store import create_pool, migrate
from workers.settings import Settings
from workers.temporal import connect
from workflows.annual_report import AnnualReport
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept

log = structlog.get_logger(__name__)

WORKFLOWS: Sequence[type] = (AchievementLifecycle, ProofOfConcept, AnnualReport)


@dataclass
class Dependencies:
    """What the activities need; owned by the process that runs the worker."""

    pool: asyncpg.Pool
    registry: RegistryClient
    exchange: ExchangeClient

    @classmethod
    async def open(cls, settings: Settings, dsn: str) -> Dependencies:
        return cls(
            pool=await create_pool(dsn, max_size=max(2, settings.max_concurrent_activities // 10)),
            registry=RegistryClient(settings.registry_url, timeout=settings.http_timeout_seconds),
            exchange=ExchangeClient(settings.exchange_url, timeout=settings.http_timeout_seconds),
        )

    async def close(self) -> None:
        await self.registry.aclose()
        await self.exchange.aclose()
        await self.pool.close()


def build_worker(
    client: Client, deps: Dependencies, task_queue: str, settings: Settings | None = None
) -> Worker:
    settings = settings or Settings()
    registry = RegistryActivities(deps.registry)
    exchange = ExchangeActivities(deps.exchange)
    projections = ProjectionActivities(deps.pool)
    reports = ReportActivities(deps.pool)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[
            registry.register_achievement,
            registry.register_contract,
            registry.register_equity,
            registry.apply_for_poc,
            registry.submit_lifecycle_report,
            registry.submit_annual_report,
            exchange.search,
            exchange.create_listing,
            exchange.withdraw_listing,
            projections.record_event,
            reports.active_institutions,
            reports.build_institution_report,
        ],
        max_concurrent_activities=settings.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=settings.drain_timeout_seconds),
    )


def install_runtime(metrics_port: int) -> None:
    """Prometheus metrics of the SDK at :metrics_port/metrics (0 disables)."""
    if metrics_port:
        Runtime.set_default(
            Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(bind_address=f"0.0.0.0:{metrics_port}")
                )
            ),
            error_if_already_set=True,
        )


async def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then drain in-flight activities for the drain timeout."""
    if settings.database_url is None:
        raise SystemExit("ACHIEVEMENTS_DATABASE_URL is required for a worker")
    install_runtime(settings.metrics_port)
    dsn = settings.database_url.get_secret_value()
    await migrate(dsn)
    client = await connect()
    deps = await Dependencies.open(settings, dsn)
    worker = build_worker(client, deps, settings.task_queue, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker_started",
        task_queue=settings.task_queue,
        namespace=client.namespace,
        metrics_port=settings.metrics_port,
    )
    try:
        async with worker:
            await stop.wait()
            log.info("worker_draining", drain_timeout_s=settings.drain_timeout_seconds)
    finally:
        await deps.close()
        log.info("worker_stopped")
