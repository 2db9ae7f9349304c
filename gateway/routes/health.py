"""Liveness and readiness: open to all, so orchestrators need no token.

Temporal and PostgreSQL are reported apart, so a probe (or a person) sees which one is down;
the answer is 503 when either is. Without a pool (a gateway with no list views) PostgreSQL
reads "not configured" and does not count.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from gateway.dependencies import Context
from schemas.gateway_api import Health

HEALTH_TIMEOUT = timedelta(seconds=2)
router = APIRouter(tags=["health"])


async def _temporal_ok(ctx: Context) -> bool:
    try:
        return await ctx.lifecycles.client.service_client.check_health(timeout=HEALTH_TIMEOUT)
    except RPCError:
        return False


async def _postgres_ok(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT.total_seconds()):
            return bool(await pool.fetchval("SELECT 1") == 1)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


@router.get(
    "/healthz",
    summary="Liveness: Temporal and PostgreSQL, each reported",
    response_model=Health,
    responses={503: {"model": Health, "description": "Temporal or PostgreSQL is unreachable"}},
)
async def healthz(ctx: Context) -> JSONResponse:
    temporal, pool = await _temporal_ok(ctx), ctx.pool
    postgres = None if pool is None else await _postgres_ok(pool)
    down = not temporal or postgres is False
    body = Health(
        status="unavailable" if down else "ok",
        temporal="ok" if temporal else "unavailable",
        postgres="not configured" if postgres is None else "ok" if postgres else "unavailable",
    )
    return JSONResponse(status_code=503 if down else 200, content=body.model_dump())
