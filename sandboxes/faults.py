"""Fault injection and request logging shared by both sandboxes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, FastAPI, Request, Response

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


def install(app: FastAPI, state: FaultState, system: str) -> None:
    """Faults apply to the public /v1 API only; the /sandbox controls must stay usable."""
    logger = log.bind(system=system)

    @app.middleware("http")
    async def faults_and_logging(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        path = request.url.path
        faults = state.current
        injected = False
        if path.startswith("/v1/"):
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            injected = state.inject_error()
        if injected:
            # Before the handler runs, so an injected failure never has an effect.
            response: Response = error_response(
                503, "injected_fault", "sandbox fault injection: service unavailable"
            )
        else:
            response = await call_next(request)
        # Method, path, key and outcome only: bodies may be confidential.
        logger.info(
            "sandbox.request",
            method=request.method,
            path=path,
            status=response.status_code,
            idempotency_key=request.headers.get("Idempotency-Key"),
            injected_fault=injected,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

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
