"""The HTTP gateway: people and external systems change an achievement's state through it.

A short factory: the context every route depends on, the error handlers and one router per
resource. People authenticate with bearer tokens from the institution's OpenID Connect provider
(gateway/tokens.py) and act within their roles (gateway/permissions.py); systems sign their
webhooks. Bad input is refused with every bad field named, before anything reaches Temporal.
"""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI
from temporalio.client import Client

from core.policy_book import PolicyBook
from core.settings import Settings
from gateway import errors, metrics
from gateway.codec_server import MAX_CODEC_BODY, codec_router
from gateway.dependencies import GatewayContext
from gateway.lifecycles import Lifecycles
from gateway.limits import BodyLimits
from gateway.routes import achievements, commands, funds, health, overview, reads, webhooks
from gateway.routes.webhooks import MAX_WEBHOOK_BODY
from gateway.tokens import TokenVerifier

MAX_BODY = 256 * 1024  # a disclosure with 100 inventors and 200 IP assets is ~60 KiB
MAX_JSON_DEPTH = 32  # the deepest request model nests 5 levels


def create_gateway_app(
    client: Client,
    settings: Settings,
    policy_book: PolicyBook,
    verifier: TokenVerifier,
    pool: asyncpg.Pool | None = None,
) -> FastAPI:
    """`pool`: the projections' PostgreSQL; without it the list views and feed answer 503."""
    app = FastAPI(
        title="Achievement Lifecycle Engine gateway",
        description="Disclose achievements, submit reviews and commands, read what is yours, "
        "receive signed webhooks. People send `Authorization: Bearer <access token>` from "
        "their institution's OpenID Connect provider; systems sign their webhooks.",
        version="2",
    )
    # Hostile bodies are refused before any route parses them: too large (413), not UTF-8
    # (400), or nested deeper than any request model goes (422); the connection stays usable.
    app.add_middleware(
        BodyLimits,
        max_body=MAX_BODY,
        per_path={"/webhooks/": MAX_WEBHOOK_BODY, "/codec/": MAX_CODEC_BODY},
        max_depth=MAX_JSON_DEPTH,
        always_json=("/webhooks/", "/codec/"),
    )
    app.state.gateway = GatewayContext(
        settings=settings,
        policy_book=policy_book,
        lifecycles=Lifecycles(client, settings.temporal_ui_url),
        verifier=verifier,
        pool=pool,
    )
    errors.install(app)
    for router in (health, achievements, commands, webhooks, reads, overview, metrics, funds):
        app.include_router(router.router)
    # The Web UI's codec server, with the client's own codec (404 when encryption is off).
    app.include_router(codec_router(client.data_converter.payload_codec, settings, verifier))
    return app
