"""The gateway's error answers: one shape per status, every bad field named, nothing echoed.

422 lists `{"field", "message"}` per bad field; every other error is `{"detail", "field"}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from temporalio.service import RPCError, RPCStatusCode

from schemas.gateway_api import Problem, ValidationErrors

log = structlog.get_logger(__name__)

# What asyncpg raises while PostgreSQL is down or restarting: refused, dropped, shutting down.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

ERRORS: dict[int, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not UTF-8"},
    401: {"model": Problem, "description": "No valid bearer token (see WWW-Authenticate)"},
    403: {"model": Problem, "description": "The token's roles or institution do not allow it"},
    404: {"model": Problem, "description": "No such achievement (or not the caller's)"},
    409: {"model": Problem, "description": "Refused in the current state"},
    413: {"model": Problem, "description": "Body too large"},
    422: {"model": ValidationErrors, "description": "Invalid input, every bad field named"},
    429: {"model": Problem, "description": "The workflow service is busy: retry after a while"},
    503: {
        "model": Problem,
        "description": "The workflow service, database or identity provider is unavailable",
    },
    504: {"model": Problem, "description": "The workflow did not answer in time"},
}
# Every authenticated operation may answer these (token, busy or unavailable services).
AUTHENTICATED = (401, 422, 429, 503)
# And every one with a body these (refused before parsing).
WITH_BODY = (400, 413, 422)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error statuses."""
    return {code: ERRORS[code] for code in codes}


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as dotted field paths; the input value is never echoed back."""
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            loc = []
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


def parse(model: type[BaseModel], body: bytes, *, strip_tag: bool = False) -> Any:
    """Validate raw JSON into a model; `strip_tag` drops a discriminated union's tag from locs."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        if strip_tag:
            # A discriminated union puts the tag first in each location; the client sent none.
            errors = [{**e, "loc": e["loc"][1:]} if len(e["loc"]) > 1 else e for e in errors]
        raise RequestValidationError(errors) from None


def unauthorized(reason: str, *, invalid: bool = True) -> HTTPException:
    """401 with the RFC 6750 challenge; `invalid` adds error="invalid_token" (a token was sent)."""
    challenge = 'Bearer realm="achievements"'
    if invalid:
        # RFC 6750 3: printable ASCII but '"' and '\\' (and never anything a caller wrote).
        described = "".join(c for c in reason if " " <= c <= "~" and c not in '"\\')
        challenge += f', error="invalid_token", error_description="{described}"'
    return HTTPException(401, reason, headers={"WWW-Authenticate": challenge})


def install(app: FastAPI) -> None:
    """The exception handlers every route relies on."""

    @app.exception_handler(RequestValidationError)
    async def _validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": field_errors(exc.errors())})

    @app.exception_handler(RPCError)
    async def _temporal_failed(_: Request, exc: RPCError) -> JSONResponse:
        # Anything not translated where it happened is Temporal being unavailable or busy.
        log.warning("temporal call failed", status=exc.status.name, message=exc.message)
        if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            return JSONResponse(
                status_code=429,
                content={"detail": "the workflow service is busy; retry shortly"},
                headers={"Retry-After": "2"},
            )
        return JSONResponse(status_code=503, content={"detail": "workflow service unavailable"})

    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL restarting or gone: the list views and feed say so instead of a 500.
        log.warning("database unavailable", error=type(exc).__name__)
        return JSONResponse(
            status_code=503,
            content={"detail": "the database is unavailable; retry shortly"},
            headers={"Retry-After": "5"},
        )

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)
