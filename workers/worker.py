"""The lifecycle workers: workflows and activities on their task queues, clients injected."""

from __future__ import annotations

import asyncio
import compileall
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker, WorkerDeploymentConfig

import workflows
from activities.exchange import ExchangeActivities
from activities.exchange_client import ExchangeClient
from activities.fund import FundActivities
from activities.projections import ProjectionActivities
from activities.registry import RegistryActivities
from activities.registry_client import RegistryClient
from activities.reports import ReportActivities
from activities.store import create_pool, migrate
from core.settings import DEPLOYMENT_NAME, Settings
from core.temporal import connect
from workflows.annual_report import AnnualReport
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept
from workflows.transfer_fund import TransferFund

log = structlog.get_logger(__name__)

WORKFLOWS: Sequence[type] = (AchievementLifecycle, ProofOfConcept, AnnualReport, TransferFund)


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


class WorkerGroup:
    """The lifecycle worker and one worker per external system, started and stopped together.

    Registry and exchange activities run on their own task queues ("<queue>-registry",
    "<queue>-exchange") so that each system's rate limit is enforced by the server across
    every worker process. The main queue also keeps them, for calls scheduled there by
    lifecycles that started before the split.
    """

    def __init__(self, main: Worker, *systems: Worker) -> None:
        self.main = main
        self.workers = (main, *systems)
        self.task_queue = main.task_queue

    async def __aenter__(self) -> WorkerGroup:
        started: list[Worker] = []
        try:
            for worker in self.workers:
                await worker.__aenter__()
                started.append(worker)
        except BaseException:
            await asyncio.gather(*(w.__aexit__(None, None, None) for w in started))
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(w.__aexit__(None, None, None) for w in self.workers))


def cache_workflow_bytecode() -> None:
    """Compile the workflow modules once, for the sandbox's sake.

    The sandbox imports the workflow modules afresh for every new run and every replay after a
    cache eviction. Without a bytecode cache (PYTHONDONTWRITEBYTECODE, a fresh checkout) each of
    those imports compiles the source again: about 5 % of the worker's CPU in a profile.
    A read-only install (the image, where pip compiled them) makes this a no-op.
    """
    compileall.compile_dir(Path(workflows.__file__).parent, quiet=2)


class WorkerOptions(TypedDict):
    max_concurrent_activities: int
    max_cached_workflows: int
    graceful_shutdown_timeout: timedelta
    deployment_config: WorkerDeploymentConfig


def worker_options(settings: Settings) -> WorkerOptions:
    """What every worker of this process shares, whichever queue it polls."""
    return WorkerOptions(
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=settings.drain_timeout_seconds),
        # Versioning is off (running lifecycles change through workflow.patched); the version
        # only names the build in the UI.
        deployment_config=WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(DEPLOYMENT_NAME, settings.build_id),
            use_worker_versioning=False,
        ),
    )


def build_worker(
    client: Client, deps: Dependencies, task_queue: str, settings: Settings | None = None
) -> WorkerGroup:
    settings = settings or Settings()
    cache_workflow_bytecode()
    registry = RegistryActivities(deps.registry)
    exchange = ExchangeActivities(deps.exchange)
    projections = ProjectionActivities(deps.pool)
    reports = ReportActivities(deps.pool)
    fund = FundActivities(deps.pool)
    registry_activities: list[Callable[..., Any]] = [
        registry.register_achievement,
        registry.register_contract,
        registry.register_equity,
        registry.apply_for_poc,
        registry.cancel_poc_application,
        registry.submit_lifecycle_report,
        registry.submit_annual_report,
        registry.request_evaluation,
        registry.remind_evaluation,
    ]
    exchange_activities: list[Callable[..., Any]] = [
        exchange.search,
        exchange.create_listing,
        exchange.withdraw_listing,
        exchange.reject_deal,
    ]

    options = worker_options(settings)

    def worker(
        queue: str,
        activities: list[Callable[..., Any]],
        workflows: Sequence[type] = (),
        rate_limit: float | None = None,
    ) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            workflows=list(workflows),
            activities=activities,
            max_task_queue_activities_per_second=rate_limit,
            **options,
        )

    main_activities: list[Callable[..., Any]] = [
        *registry_activities,
        *exchange_activities,
        projections.record_event,
        projections.record_events,
        reports.active_institutions,
        reports.build_institution_report,
        fund.accrue,
        fund.record_entries,
    ]
    return WorkerGroup(
        worker(task_queue, main_activities, WORKFLOWS),
        worker(
            f"{task_queue}-registry", registry_activities, rate_limit=settings.registry_rate_limit
        ),
        worker(
            f"{task_queue}-exchange", exchange_activities, rate_limit=settings.exchange_rate_limit
        ),
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
    client = await connect(settings=settings)
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
