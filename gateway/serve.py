"""Serve the gateway in the current event loop, beside the worker, until cancelled."""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio.client import Client

from core.http_server import bind_socket, make_server
from core.policy_book import PolicyBook, PolicyFileError
from core.settings import Settings
from gateway.app import create_gateway_app
from gateway.tokens import TokenVerifier


async def serve_gateway(
    client: Client,
    settings: Settings,
    host: str,
    port: int,
    policy_book: PolicyBook | None = None,
    pool: asyncpg.Pool | None = None,
) -> None:
    """Run uvicorn until cancelled; the host process keeps its own SIGINT/SIGTERM handling.

    make_server() gives a uvicorn server whose capture_signals() is a no-op (uvicorn 0.54 would
    otherwise replace the process's handlers). Binding the socket here turns "port in use" into
    an OSError for the caller instead of uvicorn's sys.exit(1).
    """
    refuse_sandbox_secrets(settings)
    try:
        book = policy_book or PolicyBook.load(settings.policy_file)
    except PolicyFileError as err:
        raise SystemExit(str(err)) from None  # one line, not a traceback per worker
    verifier = token_verifier(settings)
    sock = bind_socket(host, port)
    server = make_server(create_gateway_app(client, settings, book, verifier, pool), host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway")
    try:
        # asyncio.wait, unlike awaiting the task, does not cancel it when we are cancelled.
        await asyncio.wait({task})
        task.result()
    finally:
        # Graceful: stop accepting, let in-flight requests finish, then close the socket.
        server.should_exit = True
        await asyncio.wait({task})
        sock.close()
        await verifier.close()


def refuse_sandbox_secrets(settings: Settings) -> None:
    """Outside the embedded stack, a webhook secret anyone can read in this repository would
    let anyone forge an exchange's deal: refuse to start, naming the setting and systems."""
    if settings.environment == "dev":
        return
    if systems := settings.sandbox_secrets():
        raise SystemExit(
            "ACHIEVEMENTS_WEBHOOK_SECRETS still holds the sandbox default secret for "
            f"{', '.join(systems)}: set a secret of its own for every system (or run the "
            "embedded stack, `achievements dev`, where ACHIEVEMENTS_ENVIRONMENT=dev)"
        )


def token_verifier(settings: Settings) -> TokenVerifier:
    """The bearer-token verifier the settings describe; there is no unauthenticated mode."""
    if not settings.oidc_issuer:
        raise SystemExit(
            "ACHIEVEMENTS_OIDC_ISSUER is not set: the gateway verifies people's bearer tokens "
            "against that OpenID Connect issuer (`achievements dev` runs a local one)"
        )
    return TokenVerifier(
        settings.oidc_issuer,
        settings.oidc_audience,
        roles_claim=settings.oidc_roles_claim,
        institution_claim=settings.oidc_institution_claim,
        leeway_seconds=settings.oidc_leeway_seconds,
        refresh_interval_seconds=settings.oidc_keys_refresh_seconds,
    )
