"""The OpenAPI documents in docs/api are the published contracts: they must match the code.

Regenerate after an intended API change with ACHIEVEMENTS_WRITE_OPENAPI=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from gateway.app import create_gateway_app
from sandboxes.exchange import create_exchange_app
from sandboxes.registry import create_registry_app
from workers.policy_book import PolicyBook
from workers.settings import Settings

API_DOCS = Path(__file__).parent.parent / "docs" / "api"


def _apps(env: WorkflowEnvironment) -> dict[str, FastAPI]:
    # Building the schema touches neither the database nor Temporal.
    return {
        "registry": create_registry_app("postgresql://unused"),
        "exchange": create_exchange_app("postgresql://unused", "http://unused", "unused"),
        "gateway": create_gateway_app(env.client, Settings(), PolicyBook.load()),
    }


def _document(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(app.openapi(), sort_keys=True))
    return document


@pytest.mark.parametrize("name", ["registry", "exchange", "gateway"])
async def test_published_openapi_matches_the_code(name: str, dev_env: WorkflowEnvironment) -> None:
    document = _document(_apps(dev_env)[name])
    path = API_DOCS / f"{name}.openapi.json"
    if os.environ.get("ACHIEVEMENTS_WRITE_OPENAPI") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    published = json.loads(path.read_text(encoding="utf-8"))
    assert published == document, f"{path} is stale: regenerate with ACHIEVEMENTS_WRITE_OPENAPI=1"


async def test_every_mutating_registry_and_exchange_call_takes_an_idempotency_key(
    dev_env: WorkflowEnvironment,
) -> None:
    apps = _apps(dev_env)
    for name in ("registry", "exchange"):
        for route, operations in _document(apps[name])["paths"].items():
            post = operations.get("post")
            if post is None or route.endswith("/search") or route.startswith("/sandbox/faults"):
                continue
            headers = {p["name"] for p in post.get("parameters", []) if p["in"] == "header"}
            assert "Idempotency-Key" in headers, f"{name} POST {route}"
    assert "exchange-event" in _document(apps["exchange"])["webhooks"]
