"""What both sandboxes share: the pool, the migration, idempotency keys and ApiError bodies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.registry_api import ApiError

log = structlog.get_logger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"
MIGRATION = "0001_sandboxes.sql"
# Both apps may start at once against one database; CREATE ... IF NOT EXISTS alone races.
_MIGRATION_LOCK = 0x5A4D_B0C5

Pool = asyncpg.Pool
Record = asyncpg.Record
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # Effects run on pooled connections; the proxy is only generic in the stubs.
    Connection: TypeAlias = PoolConnectionProxy[Record]
else:
    from asyncpg.pool import PoolConnectionProxy as Connection
JSON = dict[str, Any]
# What asyncpg raises while PostgreSQL is down or restarting: refused, dropped, shutting down.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class SandboxError(Exception):
    """An ApiError answer; raising it inside an effect also rolls the effect back."""

    def __init__(
        self, status: int, type: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = ApiError(type=type, message=message, fields=fields or [])


def error_response(
    status: int, type: str, message: str, fields: list[str] | None = None
) -> JSONResponse:
    body = ApiError(type=type, message=message, fields=fields or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


async def _init_connection(conn: asyncpg.Connection[Record]) -> None:
    # jsonb in and out as Python objects rather than strings.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def open_pool(dsn: str) -> Pool:
    pool: Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=5, init=_init_connection)
    try:
        await migrate(pool)
    except BaseException:
        await pool.close()
        raise
    return pool


async def migrate(pool: Pool) -> None:
    sql = resources.files("sandboxes").joinpath("migrations", MIGRATION).read_text("utf-8")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(sql)


def request_hash(scope: str, body: BaseModel | None) -> str:
    # Hash the validated request, not the raw bytes: key order and spacing must not matter.
    # The scope (method and path) makes a key reused on another endpoint a mismatch too.
    payload = body.model_dump(mode="json") if body is not None else None
    canonical = json.dumps([scope, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


Effect = Callable[[Connection], Awaitable[JSON]]


async def idempotent(
    pool: Pool,
    schema: str,
    key: str | None,
    scope: str,
    body: BaseModel | None,
    effect: Effect,
    status_code: int = 200,
) -> JSONResponse:
    """Run effect once per key; a repeat returns the stored response, marked as replayed."""
    if not key:
        raise SandboxError(
            400,
            "idempotency_key_required",
            "every mutating request needs an Idempotency-Key header",
            ["Idempotency-Key"],
        )
    if len(key) > 255:
        raise SandboxError(
            400, "invalid_idempotency_key", "Idempotency-Key is too long", ["Idempotency-Key"]
        )
    digest = request_hash(scope, body)
    async with pool.acquire() as conn:
        async with conn.transaction():
            # A concurrent holder of the same key makes this wait until it commits or aborts.
            claimed = await conn.fetchval(
                f"INSERT INTO {schema}.idempotency_keys (idempotency_key, request_hash)"
                " VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                key,
                digest,
            )
            if claimed:
                response = await effect(conn)
                await conn.execute(
                    f"UPDATE {schema}.idempotency_keys SET response = $2"
                    " WHERE idempotency_key = $1",
                    key,
                    response,
                )
                log.info("sandbox.effect", scope=scope, idempotency_key=key)
                return JSONResponse(response, status_code=status_code)
        row = await conn.fetchrow(
            f"SELECT request_hash, response FROM {schema}.idempotency_keys"
            " WHERE idempotency_key = $1",
            key,
        )
    if row is None or row["response"] is None:
        # Only possible if the key was purged between the two statements: ask for a retry.
        raise SandboxError(409, "idempotency_conflict", "request in progress, retry")
    if row["request_hash"] != digest:
        raise SandboxError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
            ["Idempotency-Key"],
        )
    log.info("sandbox.replay", scope=scope, idempotency_key=key)
    return JSONResponse(row["response"], status_code=200, headers={REPLAYED_HEADER: "true"})


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Every error, including FastAPI's own, answers with an ApiError body."""

    async def on_sandbox_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SandboxError)
        log.info("sandbox.rejected", path=request.url.path, status=exc.status, type=exc.error.type)
        return JSONResponse(exc.error.model_dump(mode="json"), status_code=exc.status)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields: list[str] = []
        for err in exc.errors():
            # A body that is not JSON at all has a character offset as location.
            path = "body" if err.get("type") == "json_invalid" else _field_path(err["loc"])
            if path not in fields:
                fields.append(path)
        log.info("sandbox.invalid", path=request.url.path, fields=fields)
        return error_response(
            422, "validation_error", f"invalid request: {', '.join(fields)}", fields
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail))

    async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
        # Not the caller's fault and not a bug: the database is restarting or gone for now.
        log.warning("sandbox.database_unavailable", path=request.url.path, error=type(exc).__name__)
        return JSONResponse(
            ApiError(
                type="database_unavailable", message="the database is unavailable", fields=[]
            ).model_dump(mode="json"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(SandboxError, on_sandbox_error)
    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, on_database_down)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
