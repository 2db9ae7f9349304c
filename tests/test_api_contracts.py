"""The OpenAPI documents in docs/api are the published contracts: they must match the code.

Regenerate after an intended API change with ACHIEVEMENTS_WRITE_OPENAPI=1.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from core.policy_book import PolicyBook
from core.settings import Settings
from gateway.app import create_gateway_app
from gateway.permissions import Operation
from gateway.serve import token_verifier
from sandboxes.exchange import create_exchange_app
from sandboxes.registry import create_registry_app

API_DOCS = Path(__file__).parent.parent / "docs" / "api"


# The verifier fetches the issuer's keys lazily, on the first token: building the schema
# never reaches this issuer.
UNUSED_ISSUER = "http://issuer.unused"
# Open to all: liveness for orchestrators, and systems that sign their webhooks.
OPEN_OPERATIONS = {("get", "/healthz"), ("post", "/webhooks/{system}")}


@pytest_asyncio.fixture(loop_scope="session")
async def apps(dev_env: WorkflowEnvironment) -> AsyncIterator[dict[str, FastAPI]]:
    # Building the schema touches neither the database nor Temporal nor the issuer.
    settings = Settings(oidc_issuer=UNUSED_ISSUER)
    verifier = token_verifier(settings)
    try:
        yield {
            "registry": create_registry_app("postgresql://unused"),
            "exchange": create_exchange_app(
                "postgresql://unused", "http://unused", {"sstec": "unused-secret"}
            ),
            "gateway": create_gateway_app(dev_env.client, settings, PolicyBook.load(), verifier),
        }
    finally:
        await verifier.close()


def _document(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(app.openapi(), sort_keys=True))
    return document


@pytest.mark.parametrize("name", ["registry", "exchange", "gateway"])
async def test_published_openapi_matches_the_code(name: str, apps: dict[str, FastAPI]) -> None:
    document = _document(apps[name])
    path = API_DOCS / f"{name}.openapi.json"
    if os.environ.get("ACHIEVEMENTS_WRITE_OPENAPI") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    published = json.loads(path.read_text(encoding="utf-8"))
    assert published == document, f"{path} is stale: regenerate with ACHIEVEMENTS_WRITE_OPENAPI=1"


async def test_every_mutating_registry_and_exchange_call_takes_an_idempotency_key(
    apps: dict[str, FastAPI],
) -> None:
    for name in ("registry", "exchange"):
        for route, operations in _document(apps[name])["paths"].items():
            post = operations.get("post")
            if post is None or route.endswith("/search") or route.startswith("/sandbox/faults"):
                continue
            headers = {p["name"] for p in post.get("parameters", []) if p["in"] == "header"}
            assert "Idempotency-Key" in headers, f"{name} POST {route}"
    assert "exchange-event" in _document(apps["exchange"])["webhooks"]


async def test_every_people_operation_requires_the_oidc_bearer_scheme(
    apps: dict[str, FastAPI],
) -> None:
    """The published gateway contract says which operations need a token: all but the open."""
    document = _document(apps["gateway"])
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "oidc": {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token (JWT) from the institution's OpenID Connect provider",
        }
    }
    seen: set[tuple[str, str]] = set()
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            seen.add((method, route))
            if (method, route) in OPEN_OPERATIONS:
                assert "security" not in operation, f"{method.upper()} {route} is open"
                assert "401" in operation["responses"] or route == "/healthz"
            else:
                assert operation.get("security") == [{"oidc": []}], f"{method.upper()} {route}"
                assert "401" in operation["responses"], f"{method.upper()} {route}"
    assert seen >= OPEN_OPERATIONS
    # Every operation the permission table names is in the document, behind the scheme.
    assert {(op.value.split()[0].lower(), op.value.split()[1]) for op in Operation} <= seen
    # The codec server (the Temporal UI's) has its own token and stays out of the contract.
    assert not any(route.startswith("/codec") for route in document["paths"])
