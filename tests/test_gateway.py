"""The gateway's HTTP contract against real workflows on a real Temporal dev server.

Everything is real: the gateway of the session `stack` over loopback HTTP, a worker with the
real workflows and activities on the stack's task queue, the registry and exchange sandboxes,
and PostgreSQL, where the lifecycle events are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from gateway_requests import PANEL, disclosure_request
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from gateway.app import MAX_WEBHOOK_BODY
from gateway.ids import workflow_id
from gateway.serve import serve_gateway
from gateway.signing import sign
from workers.settings import Settings
from workers.worker import build_worker
from workflows import search_attributes as sa

if TYPE_CHECKING:
    from conftest import Stack


@dataclass
class GatewayStack:
    client: Client
    settings: Settings
    http: httpx.AsyncClient
    db: asyncpg.Pool


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway_stack(
    dev_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool
) -> AsyncIterator[GatewayStack]:
    """The stack's real gateway, and a real worker on the queue it starts lifecycles on."""
    settings = stack.settings
    async with (
        build_worker(dev_env.client, stack.deps, settings.task_queue, settings),
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as http,
    ):
        yield GatewayStack(client=dev_env.client, settings=settings, http=http, db=db)


def new_id() -> str:
    return f"GW-{uuid.uuid4().hex[:10].upper()}"


def signed(
    gw: GatewayStack, system: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    secret = gw.settings.webhook_secret(system).get_secret_value()
    return {**sign(secret, body, timestamp), "Content-Type": "application/json"}


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.1)


async def state(gw: GatewayStack, achievement_id: str) -> dict[str, Any]:
    response = await gw.http.get(f"/achievements/{achievement_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def disclose_to_evaluation(gw: GatewayStack, achievement_id: str) -> None:
    response = await gw.http.post("/achievements", json=disclosure_request(achievement_id))
    assert response.status_code == 201, response.text

    async def in_evaluation() -> bool:
        return bool((await state(gw, achievement_id))["stage"] == "evaluation")

    await eventually(in_evaluation)


def fields(response: Any) -> set[str]:
    return {e["field"] for e in response.json()["detail"]}


async def test_healthz_and_openapi(gateway_stack: GatewayStack) -> None:
    response = await gateway_stack.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    paths = (await gateway_stack.http.get("/openapi.json")).json()["paths"]
    assert paths["/achievements"]["post"]["summary"]
    assert "/webhooks/{system}" in paths


async def test_disclose_starts_the_lifecycle(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    response = await gw.http.post("/achievements", json=disclosure_request(aid))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["workflow_id"] == workflow_id(aid)
    assert body["run_id"]
    assert body["policy_version"] == "demo-accelerated.1"  # SYN- institutions get the demo book

    async def evaluated_or_resource() -> bool:
        return bool((await state(gw, aid))["stage"] in ("evaluation", "resource"))

    await eventually(evaluated_or_resource)
    described = await gw.client.get_workflow_handle(workflow_id(aid)).describe()
    assert described.typed_search_attributes.get(sa.INSTITUTION) == "SYN-UNI"

    # Registered with the real registry, and the event of it recorded in PostgreSQL.
    async def registered() -> bool:
        row = await gw.db.fetchrow(
            "SELECT payload FROM lifecycle_events WHERE achievement_id = $1 AND type = $2",
            aid,
            "registered",
        )
        return row is not None

    await eventually(registered)
    event = await gw.db.fetchrow(
        "SELECT payload, source FROM lifecycle_events WHERE achievement_id = $1 AND type = $2",
        aid,
        "registered",
    )
    assert event is not None and event["source"] == "registry"
    async with httpx.AsyncClient(base_url=gw.settings.registry_url) as registry:
        record = (await registry.get(f"/v1/achievements/{aid}")).json()
    assert record["registration_number"] == event["payload"]["registration_number"]


async def test_duplicate_disclosure_is_a_no_op(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    first = await gw.http.post("/achievements", json=disclosure_request(aid))
    assert first.status_code == 201, first.text
    again = await gw.http.post("/achievements", json=disclosure_request(aid))
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["run_id"] == first.json()["run_id"]

    query = f"WorkflowId = '{workflow_id(aid)}'"

    async def visible() -> bool:
        return (await gw.client.count_workflows(query)).count >= 1

    await eventually(visible)
    assert (await gw.client.count_workflows(query)).count == 1


async def test_same_id_different_content_conflicts(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    assert (await gw.http.post("/achievements", json=disclosure_request(aid))).status_code == 201
    changed = disclosure_request(aid, title="Another invention entirely")
    response = await gw.http.post("/achievements", json=changed)
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "disclosure.achievement_id"


async def test_invalid_disclosure_names_every_field_and_starts_nothing(
    gateway_stack: GatewayStack,
) -> None:
    gw, aid = gateway_stack, new_id()
    bad = disclosure_request(
        aid,
        inventors=[{"name": "Li", "share": "50"}, {"name": "Wang", "share": "40"}],
        trl=12,
        funding=[{"kind": "municipal_finance", "project_code": "SH-1"}],
    )
    response = await gw.http.post("/achievements", json=bad)
    assert response.status_code == 422, response.text
    assert {"disclosure.inventors", "disclosure.trl", "disclosure.funding.0"} <= fields(response)
    assert "confidential" not in response.text  # input values are never echoed
    with pytest.raises(RPCError) as err:
        await gw.client.get_workflow_handle(workflow_id(aid)).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


async def test_malformed_json_and_float_money_are_422(gateway_stack: GatewayStack) -> None:
    gw = gateway_stack
    broken = await gw.http.post(
        "/achievements", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    body = disclosure_request(new_id())
    body["asking_price"] = 500000.1
    response = await gw.http.post("/achievements", json=body)
    assert response.status_code == 422, response.text
    assert "asking_price" in fields(response)


async def test_review_from_outside_the_panel_is_refused(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    review = {
        "reviewer_id": "intruder",
        "novelty": 4,
        "maturity": 4,
        "market": 4,
        "ip_strength": 4,
        "recommendation": "transaction",
    }
    response = await gw.http.post(f"/achievements/{aid}/reviews", json=review)
    assert response.status_code == 409, response.text
    assert "not on the assigned panel" in response.json()["detail"]
    accepted = await gw.http.post(
        f"/achievements/{aid}/reviews", json={**review, "reviewer_id": PANEL[0]}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["result"] == 1


async def test_unknown_achievement_is_404(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    assert (await gw.http.get(f"/achievements/{aid}")).status_code == 404
    withdrawal = {"reason": "no longer pursued", "requested_by": "tto"}
    assert (await gw.http.post(f"/achievements/{aid}/withdraw", json=withdrawal)).status_code == 404
    hook = json.dumps(
        {
            "type": "incubator_admitted",
            "achievement_id": aid,
            "event_id": "inc-1",
            "incubator": "Zhangjiang Incubator",
            "admitted_at": "2025-01-01T00:00:00Z",
        }
    ).encode()
    response = await gw.http.post(
        "/webhooks/incubator", content=hook, headers=signed(gw, "incubator", hook)
    )
    assert response.status_code == 404, response.text
    assert (await gw.http.post("/webhooks/bank", content=b"{}")).status_code == 404


def bid_hook(aid: str, event_id: str, listing: str = "sstec-none") -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "type": "bid",
            "exchange": "sstec",
            "listing_id": listing,
            "achievement_id": aid,
            "occurred_at": "2025-03-01T08:00:00Z",
            "bid": {"bidder": "Acme Semiconductors", "amount": "450000.00"},
        }
    ).encode()


async def test_unsigned_or_stale_webhooks_never_reach_the_workflow(
    gateway_stack: GatewayStack,
) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    body = bid_hook(aid, "bid-forged")
    forged = {**signed(gw, "exchange", body), "X-Webhook-Signature": "v1=" + "0" * 64}
    assert (
        await gw.http.post("/webhooks/exchange", content=body, headers=forged)
    ).status_code == 401
    wrong_secret = signed(gw, "incubator", body)  # a valid signature, with another system's secret
    response = await gw.http.post("/webhooks/exchange", content=body, headers=wrong_secret)
    assert response.status_code == 401
    stale = signed(gw, "exchange", body, timestamp=int(time.time()) - 3600)
    assert (
        await gw.http.post("/webhooks/exchange", content=body, headers=stale)
    ).status_code == 401
    unsigned = {"Content-Type": "application/json"}
    assert (
        await gw.http.post("/webhooks/exchange", content=body, headers=unsigned)
    ).status_code == 401

    history = await gw.client.get_workflow_handle(workflow_id(aid)).fetch_history()
    signalled = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert signalled == []


async def test_oversize_webhook_is_413(gateway_stack: GatewayStack) -> None:
    gw = gateway_stack
    body = b'{"pad": "' + b"x" * MAX_WEBHOOK_BODY + b'"}'
    response = await gw.http.post(
        "/webhooks/exchange", content=body, headers=signed(gw, "exchange", body)
    )
    assert response.status_code == 413


async def test_exchange_webhook_missing_its_data_part_is_422(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    payload = json.loads(bid_hook(aid, "bid-x"))
    del payload["bid"]
    body = json.dumps(payload).encode()
    response = await gw.http.post(
        "/webhooks/exchange", content=body, headers=signed(gw, "exchange", body)
    )
    assert response.status_code == 422, response.text
    assert fields(response) == {"bid"}
    payload = json.loads(bid_hook("x" * 2000, "bid-y"))
    body = json.dumps(payload).encode()
    response = await gw.http.post(
        "/webhooks/exchange", content=body, headers=signed(gw, "exchange", body)
    )
    assert response.status_code == 422, response.text
    assert fields(response) == {"achievement_id"}


async def test_registry_webhook_is_acknowledged(gateway_stack: GatewayStack) -> None:
    gw = gateway_stack
    body = json.dumps(
        {"event_id": "reg-1", "type": "registration_confirmed", "achievement_id": new_id()}
    ).encode()
    response = await gw.http.post(
        "/webhooks/registry", content=body, headers=signed(gw, "registry", body)
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": True, "event_id": "reg-1"}


async def test_duplicate_exchange_webhook_has_one_effect(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    decision = {"route": "transaction", "decided_by": "operator-1", "reason": "ready to list"}
    decided = await gw.http.post(f"/achievements/{aid}/decision", json=decision)
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"] == "transaction"

    async def listed() -> bool:
        return bool((await state(gw, aid))["listings"])

    await eventually(listed)
    listing = (await state(gw, aid))["listings"][0]["listing_id"]
    event_id = f"bid-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        body = bid_hook(aid, event_id, listing)
        response = await gw.http.post(
            "/webhooks/exchange", content=body, headers=signed(gw, "exchange", body)
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": True, "event_id": event_id}

    async def flushed() -> bool:
        current = await state(gw, aid)
        return event_id in current["seen_event_ids"] and not current["outbox"]

    await eventually(flushed)
    current = await state(gw, aid)
    assert current["seen_event_ids"].count(event_id) == 1
    bids = await gw.db.fetch(
        "SELECT payload FROM lifecycle_events WHERE achievement_id = $1 AND type = 'bid_received'",
        aid,
    )
    assert len(bids) == 1
    assert bids[0]["payload"]["event_id"] == event_id


async def test_update_refused_in_the_wrong_stage(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    activation = {"modes": ["licence"], "activated_by": "operator-1"}
    response = await gw.http.post(f"/achievements/{aid}/activate", json=activation)
    assert response.status_code == 409
    assert "only a resource can be activated" in response.json()["detail"]
    go = {"technical_feasible": True, "market_feasible": True, "decided_by": "fund"}
    response = await gw.http.post(f"/achievements/{aid}/poc/decision", json=go)
    assert response.status_code == 409, response.text


async def test_closed_lifecycle_refuses_updates_and_webhooks(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    withdrawal = {"reason": "the team left", "requested_by": "tto-officer"}
    response = await gw.http.post(f"/achievements/{aid}/withdraw", json=withdrawal)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "withdrawing"
    await gw.client.get_workflow_handle(workflow_id(aid)).result()
    assert (await state(gw, aid))["stage"] == "withdrawn"  # still readable once closed
    again = await gw.http.post(f"/achievements/{aid}/withdraw", json=withdrawal)
    assert again.status_code == 409, again.text
    body = bid_hook(aid, "bid-late")
    late = await gw.http.post(
        "/webhooks/exchange", content=body, headers=signed(gw, "exchange", body)
    )
    assert late.status_code == 409, late.text


async def test_serve_gateway_keeps_the_process_signal_handlers(
    gateway_stack: GatewayStack,
) -> None:
    gw = gateway_stack
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(serve_gateway(gw.client, gw.settings, "127.0.0.1", port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def up() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up)
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.done()


async def test_incubator_and_poc_fund_webhooks(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    bad = json.dumps(
        {
            "type": "company_founded",
            "achievement_id": aid,
            "event_id": "inc-2",
            "company_name": "Acme",
            "credit_code": "not-a-code",
            "equity_share": "30",
            "valuation": "1000000.00",
            "founded_at": "2025-01-01T00:00:00Z",
        }
    ).encode()
    response = await gw.http.post(
        "/webhooks/incubator", content=bad, headers=signed(gw, "incubator", bad)
    )
    assert response.status_code == 422, response.text
    assert fields(response) == {"credit_code"}
    report = json.dumps(
        {
            "type": "milestone_reported",
            "achievement_id": aid,
            "report": {
                "event_id": "poc-1",
                "milestone_id": "m1",
                "achieved": True,
                "reported_at": "2025-01-01T00:00:00Z",
            },
        }
    ).encode()
    response = await gw.http.post(
        "/webhooks/poc-fund", content=report, headers=signed(gw, "poc-fund", report)
    )
    assert response.status_code == 409, response.text  # no proof of concept running
    milestone = json.dumps(
        {
            "type": "incubation_milestone",
            "achievement_id": aid,
            "event_id": "inc-3",
            "kind": "product",
            "description": "first product shipped",
            "reached_at": "2025-01-01T00:00:00Z",
        }
    ).encode()
    response = await gw.http.post(
        "/webhooks/incubator", content=milestone, headers=signed(gw, "incubator", milestone)
    )
    assert response.status_code == 202, response.text
    # Acknowledged, but an incubator event before any company exists has no effect.
    assert (await state(gw, aid))["incubation_milestones"] == []
