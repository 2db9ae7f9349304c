"""Fault injection and request logging shared by both sandboxes."""

from __future__ import annotations

import asyncio
import random
import time

import structlog
from fastapi import APIRouter, FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandboxes.store import error_response
from schemas.exchange_api import Faults

log = structlog.get_logger(__name__)


class FaultState:
    """The app's current faults; replaced as a whole so a reader never sees half an update."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.current = faults or Faults()

    def inject_error(self) -> bool:
        return self.current.error_rate > 0 and random.random() < self.current.error_rate

    def drop_webhook(self) -> bool:
        rate = self.current.webhook_drop_rate
        return rate > 0 and random.random() < rate

    def duplicate_webhook(self) -> bool:
        rate = self.current.webhook_duplicate_rate
        return rate > 0 and random.random() < rate


class FaultsAndLogging:
    """Plain ASGI middleware: Starlette's BaseHTTPMiddleware costs ~1 ms of CPU per request."""

    def __init__(self, app: ASGIApp, state: FaultState, logger: structlog.BoundLogger) -> None:
        self.app = app
        self.state = state
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        faults = self.state.current
        injected = False
        if path.startswith("/v1/"):
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            injected = self.state.inject_error()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if injected:
            # Before the handler runs, so an injected failure never has an effect.
            response = error_response(
                503, "injected_fault", "sandbox fault injection: service unavailable"
            )
            await response(scope, receive, send_and_note)
        else:
            await self.app(scope, receive, send_and_note)
        # Method, path, key and outcome only: bodies may be confidential.
        self.logger.info(
            "sandbox.request",
            method=scope["method"],
            path=path,
            status=status,
            idempotency_key=Headers(scope=scope).get("Idempotency-Key"),
            injected_fault=injected,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )


def install(app: FastAPI, state: FaultState, system: str) -> None:
    """Faults apply to the public /v1 API only; the /sandbox controls must stay usable."""
    logger = log.bind(system=system)
    app.add_middleware(FaultsAndLogging, state=state, logger=logger)

    router = APIRouter(prefix="/sandbox", tags=["sandbox"])

    @router.get("/faults")
    async def get_faults() -> Faults:
        return state.current

    @router.put("/faults")
    async def put_faults(faults: Faults) -> Faults:
        state.current = faults
        logger.info("sandbox.faults_changed", **faults.model_dump())
        return faults

    app.include_router(router)
