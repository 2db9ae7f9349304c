"""What routes depend on: the gateway's context, the caller's verified identity and grant.

The bearer scheme is declared once here, so every route that depends on `authorized(...)`
carries it in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import Depends, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.policy_book import PolicyBook
from core.settings import Settings
from gateway.errors import unauthorized
from gateway.lifecycles import Lifecycles
from gateway.permissions import Grant, Operation, grant
from gateway.tokens import InvalidToken, IssuerUnavailable, Principal, TokenVerifier

log = structlog.get_logger(__name__)

NO_DATABASE = "list views need ACHIEVEMENTS_DATABASE_URL"


@dataclass
class GatewayContext:
    settings: Settings
    policy_book: PolicyBook
    lifecycles: Lifecycles
    verifier: TokenVerifier
    pool: asyncpg.Pool | None

    def need_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise HTTPException(503, NO_DATABASE)
        return self.pool


def gateway_context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx


async def context(request: Request) -> GatewayContext:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    hop on every request (a tenth of the gateway's CPU on a disclosure, measured)."""
    return gateway_context(request)


Context = Annotated[GatewayContext, Depends(context)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="oidc",
    description="An access token (JWT) from the institution's OpenID Connect provider",
)


async def _verify(ctx: GatewayContext, authorization: str | None) -> Principal:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("a bearer token is required", invalid=False)
    try:
        principal = await ctx.verifier.verify(token.strip())
    except InvalidToken as exc:
        log.info("token refused", reason=str(exc))
        raise unauthorized(str(exc)) from None
    except IssuerUnavailable as exc:
        log.warning("identity provider unavailable", reason=str(exc))
        raise HTTPException(503, "the identity provider is unavailable") from None
    structlog.contextvars.bind_contextvars(subject=principal.subject)
    return principal


def _query_names(dependant: Dependant) -> frozenset[str]:
    """Every query parameter a route declares, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


class AuthenticatedRoute(APIRoute):
    """A route that checks the bearer token before anything else, the body included: a caller
    without a valid token learns nothing, not even whether the body would have been valid.
    Then a query parameter the route does not declare is a 422 naming it, not silently
    ignored (a misspelt filter would otherwise widen a list without a word)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        known = _query_names(self.dependant)

        async def authenticate_first(request: Request) -> Response:
            ctx = gateway_context(request)
            request.state.principal = await _verify(ctx, request.headers.get("authorization"))
            unknown = sorted(set(request.query_params) - known)
            if unknown:
                raise RequestValidationError(
                    [
                        {"loc": ("query", name), "msg": "not a parameter of this operation"}
                        for name in unknown
                    ]
                )
            return await handle(request)

        return authenticate_first


async def authenticated(
    request: Request,
    ctx: Context,
    # Declares the scheme in the OpenAPI document; the route class has already checked it.
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    return await _verify(ctx, request.headers.get("authorization"))


def authorized(operation: Operation) -> Callable[..., Awaitable[Grant]]:
    """A dependency: the caller's grant for `operation`, or 401/403."""

    async def dependency(
        principal: Annotated[Principal, Depends(authenticated)],
    ) -> Grant:
        return grant(principal, operation)

    return dependency
