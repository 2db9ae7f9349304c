"""Run the sandboxes in the current event loop: registry and exchange, and the local issuer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from core.http_server import make_server
from sandboxes.exchange import create_exchange_app
from sandboxes.identity_directory import demo_directory
from sandboxes.identity_provider import KeyRing, create_identity_provider_app
from sandboxes.registry import create_registry_app
from schemas.exchange_api import Faults


async def serve_sandboxes(
    dsn: str,
    gateway_url: str,
    exchange_secrets: Mapping[str, str],
    host: str,
    registry_port: int,
    exchange_port: int,
    faults: Faults | None = None,
    registry_secret: str | None = None,
) -> None:
    """Serve the registry and the exchange until cancelled (or until one of them fails).
    With `registry_secret` the registry relays evaluation reports to the gateway, signed."""
    registry = create_registry_app(dsn, faults, gateway_url, registry_secret)
    servers = [
        make_server(registry, host, registry_port),
        make_server(
            create_exchange_app(dsn, gateway_url, exchange_secrets, faults), host, exchange_port
        ),
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # surface a startup failure or crash
    finally:
        # Graceful: stop accepting, finish in-flight requests, run the lifespans' shutdown.
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve_identity_provider(
    issuer: str, host: str, port: int, *, audience: str, keys_file: Path | None
) -> None:
    """The local test-mode OIDC issuer with the demo's synthetic people, until cancelled."""
    app = create_identity_provider_app(
        issuer, demo_directory(), KeyRing(keys_file), audience=audience
    )
    server = make_server(app, host, port)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait({task})
        task.result()
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
