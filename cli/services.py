"""The HTTP services: the gateway, and the test-mode sandboxes (registry, exchange and the local
OIDC issuer), together for `achievements dev` or apart for a deployment.

`achievements gateway` is what production runs; `achievements sandboxes` runs the test-mode
stand-ins only, never beside real systems.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from activities.store import create_pool
from core.settings import EXCHANGES, Settings
from core.temporal import connect
from gateway.serve import serve_gateway
from sandboxes.serve import serve_identity_provider, serve_sandboxes

log = structlog.get_logger(__name__)


def issuer_keys_file(settings: Settings) -> Path:
    """The local issuer's signing keys: kept across restarts, so cached CLI tokens stay valid."""
    return settings.data_dir / "issuer-keys.json"


async def _run_until_signal(services: dict[str, Coroutine[Any, Any, None]]) -> None:
    """Run the services until SIGINT/SIGTERM, or until one of them fails (then re-raise)."""
    tasks = [asyncio.create_task(coro, name=name) for name, coro in services.items()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    log.info("services_started", services=list(services))
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for task in done:
        if task is not stopper:
            task.result()  # a service that died on its own is an error
    log.info("services_stopped")


def _sandboxes(
    settings: Settings, host: str, registry_port: int, exchange_port: int, issuer_port: int
) -> dict[str, Coroutine[Any, Any, None]]:
    if settings.database_url is None:
        raise SystemExit("ACHIEVEMENTS_DATABASE_URL is required for the sandboxes")
    services: dict[str, Coroutine[Any, Any, None]] = {
        "sandboxes": serve_sandboxes(
            settings.database_url.get_secret_value(),
            settings.gateway_url,
            {x: settings.webhook_secret(x).get_secret_value() for x in EXCHANGES},
            host,
            registry_port,
            exchange_port,
            registry_secret=settings.webhook_secret("registry").get_secret_value(),
        )
    }
    if issuer_port:
        if settings.environment != "dev":
            raise SystemExit(
                "the local test-mode OIDC issuer runs only in the embedded stack "
                "(ACHIEVEMENTS_ENVIRONMENT=dev); pass --issuer-port 0 and point "
                "ACHIEVEMENTS_OIDC_ISSUER at the institution's provider"
            )
        services["issuer"] = serve_identity_provider(
            f"http://{host}:{issuer_port}",
            host,
            issuer_port,
            audience=settings.oidc_audience,
            keys_file=issuer_keys_file(settings),
        )
    return services


async def run_gateway(settings: Settings, host: str, port: int) -> None:
    """The gateway alone: the production entry point (scale it out behind a load balancer)."""
    client = await connect(settings=settings)
    pool = None
    if settings.database_url is not None:
        # The list views, feed and reports read the projections.
        pool = await create_pool(settings.database_url.get_secret_value(), max_size=5)
    try:
        await _run_until_signal({"gateway": serve_gateway(client, settings, host, port, pool=pool)})
    finally:
        if pool is not None:
            await pool.close()


async def run_sandboxes(
    settings: Settings, host: str, registry_port: int, exchange_port: int, issuer_port: int
) -> None:
    """The test-mode registry, exchange and local issuer."""
    await _run_until_signal(_sandboxes(settings, host, registry_port, exchange_port, issuer_port))


async def run_services(
    settings: Settings,
    host: str,
    gateway_port: int,
    registry_port: int,
    exchange_port: int,
    issuer_port: int,
) -> None:
    """Everything HTTP in one process, as `achievements dev` runs it."""
    if settings.database_url is None:
        raise SystemExit("ACHIEVEMENTS_DATABASE_URL is required for the sandboxes")
    client = await connect(settings=settings)
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=5)
    try:
        await _run_until_signal(
            {
                "gateway": serve_gateway(client, settings, host, gateway_port, pool=pool),
                **_sandboxes(settings, host, registry_port, exchange_port, issuer_port),
            }
        )
    finally:
        await pool.close()
