"""Run both sandboxes in the current event loop, e.g. beside the worker in the demo."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from sandboxes.exchange import create_exchange_app
from sandboxes.registry import create_registry_app
from schemas.exchange_api import Faults


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host.

    uvicorn 0.54 has no switch for this: Server.serve() wraps itself in capture_signals(),
    which replaces the process's SIGINT/SIGTERM handlers and re-raises captured signals on
    exit. Embedded in someone else's loop, the host decides when to stop (by cancelling).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        # Fail fast if startup (e.g. the database migration) fails instead of waiting forever.
        while not self.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.02)


def make_server(app: FastAPI, host: str, port: int) -> EmbeddedServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        # The apps log each request themselves with structlog, without bodies.
        access_log=False,
        log_config=None,
    )
    return EmbeddedServer(config)


def bind_socket(host: str, port: int = 0) -> socket.socket:
    """Bind now (port 0: any free one) and hand the socket to uvicorn: no race for the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve_sandboxes(
    dsn: str,
    gateway_url: str,
    exchange_secret: str,
    host: str,
    registry_port: int,
    exchange_port: int,
    faults: Faults | None = None,
) -> None:
    """Serve the registry and the exchange until cancelled (or until one of them fails)."""
    servers = [
        make_server(create_registry_app(dsn, faults), host, registry_port),
        make_server(
            create_exchange_app(dsn, gateway_url, exchange_secret, faults), host, exchange_port
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
