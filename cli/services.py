"""The HTTP services of the embedded stack in one process: gateway and both sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog

from activities.store import create_pool
from gateway.serve import serve_gateway
from sandboxes.serve import serve_sandboxes
from workers.settings import Settings
from workers.temporal import connect

log = structlog.get_logger(__name__)


async def run_services(
    settings: Settings, host: str, gateway_port: int, registry_port: int, exchange_port: int
) -> None:
    if settings.database_url is None:
        raise SystemExit("ACHIEVEMENTS_DATABASE_URL is required for the sandboxes")
    client = await connect(settings=settings)
    # The gateway's list views and event feed read the projections.
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=5)
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(serve_gateway(client, settings, host, gateway_port, pool=pool)),
        asyncio.create_task(
            serve_sandboxes(
                settings.database_url.get_secret_value(),
                settings.gateway_url,
                settings.exchange_webhook_secret.get_secret_value(),
                host,
                registry_port,
                exchange_port,
            )
        ),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    log.info(
        "services_started",
        gateway_port=gateway_port,
        registry_port=registry_port,
        exchange_port=exchange_port,
    )
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await pool.close()
    for task in done:
        if task is not stopper:
            task.result()  # a service that died on its own is an error
    log.info("services_stopped")
