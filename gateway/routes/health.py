"""Liveness: open to all, so orchestrators need no token."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from gateway.dependencies import Context
from schemas.gateway_api import Health

HEALTH_TIMEOUT = timedelta(seconds=2)
router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness, including the Temporal connection",
    response_model=Health,
    responses={503: {"model": Health, "description": "Temporal is not reachable"}},
)
async def healthz(ctx: Context) -> JSONResponse:
    try:
        ok = await ctx.lifecycles.client.service_client.check_health(timeout=HEALTH_TIMEOUT)
    except RPCError:
        ok = False
    if not ok:
        return JSONResponse(status_code=503, content={"status": "temporal unavailable"})
    return JSONResponse(content={"status": "ok"})
