"""What routes depend on: the gateway's context, the caller's verified identity and grant.

The bearer scheme is declared once here, so every route that depends on `authorized(...)`
carries it in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import refuse_floats, unauthorized
from gateway.lifecycles import Lifecycles
from gateway.permissions import Grant, Operation, grant
from gateway.tokens import InvalidToken, IssuerUnavailable, Principal, TokenVerifier
from workers.policy_book import PolicyBook
from workers.settings import Settings

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


def context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx


Context = Annotated[GatewayContext, Depends(context)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="oidc",
    description="An access token (JWT) from the institution's OpenID Connect provider",
)


async def authenticated(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise unauthorized("a bearer token is required", invalid=False)
    try:
        principal = await ctx.verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        log.info("token refused", reason=str(exc))
        raise unauthorized(str(exc)) from None
    except IssuerUnavailable as exc:
        log.warning("identity provider unavailable", reason=str(exc))
        raise HTTPException(503, "the identity provider is unavailable") from None
    structlog.contextvars.bind_contextvars(subject=principal.subject)
    return principal


def authorized(operation: Operation) -> Callable[..., Awaitable[Grant]]:
    """A dependency: the caller's grant for `operation`, or 401/403."""

    async def dependency(
        principal: Annotated[Principal, Depends(authenticated)],
    ) -> Grant:
        return grant(principal, operation)

    return dependency


async def exact_numbers(request: Request) -> None:
    refuse_floats(await request.body())
