"""The gateway's HTTP contract against real workflows on a real Temporal dev server.

Everything is real: the gateway of the session `stack` over loopback HTTP, a worker with the
real workflows and activities on the stack's task queue, the registry and exchange sandboxes,
PostgreSQL, where the lifecycle events are checked, and the session's local OpenID Connect
issuer, whose access tokens (password grant) the people of tests/identities.py send.
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
from identities import OTHER, OWN, Tokens
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from gateway.routes.webhooks import MAX_WEBHOOK_BODY
from gateway.serve import serve_gateway
from gateway.signing import sign
from workers.worker import build_worker
from workflows import search_attributes as sa
from workflows.ids import workflow_id

if TYPE_CHECKING:
    from conftest import Stack


# The people who act (tests/identities.py); OWN is the institution of gateway_requests.py.
OFFICER = "officer.syn-uni"  # tto-officer of SYN-UNI
APPROVER = "approver.syn-uni"
OTHER_OFFICER = "officer.syn-other"  # tto-officer of SYN-OTHER
OTHER_APPROVER = "approver.syn-other"
OUTSIDER = "expert-x"  # an expert on no panel
FUND = "officer.poc-fund"
REGULATOR = "regulator.shstc"


@dataclass
class GatewayStack:
    client: Client
    settings: Settings
    http: httpx.AsyncClient  # no credentials of its own: each call says who sends it
    db: asyncpg.Pool
    tokens: Tokens

    async def as_(self, username: str) -> dict[str, str]:
        """The `Authorization` header of one person, from the session's real issuer."""
        return await self.tokens.headers(username)


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
        yield GatewayStack(
            client=dev_env.client, settings=settings, http=http, db=db, tokens=stack.tokens
        )


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


async def state(gw: GatewayStack, achievement_id: str, as_: str = OFFICER) -> dict[str, Any]:
    response = await gw.http.get(f"/achievements/{achievement_id}", headers=await gw.as_(as_))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def disclose(gw: GatewayStack, body: dict[str, Any], as_: str = OFFICER) -> httpx.Response:
    return await gw.http.post("/achievements", json=body, headers=await gw.as_(as_))


async def command(
    gw: GatewayStack, achievement_id: str, what: str, body: dict[str, Any], as_: str
) -> httpx.Response:
    """POST /achievements/{id}/{what} as one person."""
    return await gw.http.post(
        f"/achievements/{achievement_id}/{what}", json=body, headers=await gw.as_(as_)
    )


async def disclose_to_evaluation(
    gw: GatewayStack, achievement_id: str, as_: str = OFFICER, **disclosure: Any
) -> None:
    body = disclosure_request(achievement_id, **disclosure)
    response = await disclose(gw, body, as_)
    assert response.status_code == 201, response.text

    async def in_evaluation() -> bool:
        return bool((await state(gw, achievement_id, as_))["stage"] == "evaluation")

    await eventually(in_evaluation)


async def event_row(
    gw: GatewayStack, achievement_id: str, type: str, within: float = 15.0
) -> asyncpg.Record:
    """The projected lifecycle event of that type, once PostgreSQL has it."""
    found: list[asyncpg.Record] = []

    async def recorded() -> bool:
        row = await gw.db.fetchrow(
            "SELECT type, source, payload, actor FROM lifecycle_events"
            " WHERE achievement_id = $1 AND type = $2 ORDER BY seq LIMIT 1",
            achievement_id,
            type,
        )
        found[:] = [row] if row is not None else []
        return row is not None

    await eventually(recorded, within)
    return found[0]


async def not_started(gw: GatewayStack, achievement_id: str) -> None:
    with pytest.raises(RPCError) as err:
        await gw.client.get_workflow_handle(workflow_id(achievement_id)).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


def detail(response: httpx.Response) -> str:
    return str(response.json()["detail"])


async def list_all(
    gw: GatewayStack, as_: str, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every page of GET /achievements as one person."""
    items: list[dict[str, Any]] = []
    query: dict[str, str | int] = {**(params or {}), "limit": 500}
    while True:
        response = await gw.http.get("/achievements", params=query, headers=await gw.as_(as_))
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        query["cursor"] = page["next_cursor"]


async def feed(gw: GatewayStack, as_: str, after: int = 0) -> list[dict[str, Any]]:
    """GET /events as one person, from `after` to the end."""
    events: list[dict[str, Any]] = []
    while True:
        response = await gw.http.get(
            "/events", params={"after": after, "limit": 1000}, headers=await gw.as_(as_)
        )
        assert response.status_code == 200, response.text
        page = response.json()
        if not page["events"]:
            return events
        events += page["events"]
        after = page["next_after"]


async def finish(gw: GatewayStack, achievement_id: str, as_: str = OFFICER) -> None:
    """Withdraw a test's lifecycle through the gateway and wait for its end."""
    response = await command(gw, achievement_id, "withdraw", {"reason": "test over"}, as_)
    assert response.status_code == 200, response.text
    await gw.client.get_workflow_handle(workflow_id(achievement_id)).result()


def other_institution() -> dict[str, Any]:
    """SYN-OTHER, whose officers must never see SYN-UNI's achievements (nor SYN-UNI theirs)."""
    return {
        "code": OTHER,
        "name": "Synthetic Other Institute",
        "kind": "research_institute",
        "state_owned": True,
    }


REVIEW = {
    "novelty": 4,
    "maturity": 4,
    "market": 4,
    "ip_strength": 4,
    "recommendation": "transaction",
}


def fields(response: Any) -> set[str]:
    return {e["field"] for e in response.json()["detail"]}


async def test_healthz_and_openapi(gateway_stack: GatewayStack) -> None:
    # Open to all: no token is sent.
    response = await gateway_stack.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "temporal": "ok", "postgres": "ok"}
    paths = (await gateway_stack.http.get("/openapi.json")).json()["paths"]
    assert paths["/achievements"]["post"]["summary"]
    assert "/webhooks/{system}" in paths
    assert (await gateway_stack.http.get("/docs")).status_code == 200


async def test_people_endpoints_need_a_valid_bearer_token(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    calls = [
        ("POST", "/achievements", disclosure_request(aid)),
        ("GET", "/achievements", None),
        ("GET", f"/achievements/{aid}", None),
        ("POST", f"/achievements/{aid}/withdraw", {"reason": "no longer pursued"}),
        ("GET", "/events", None),
        ("GET", "/me", None),
    ]
    for method, path, body in calls:
        response = await gw.http.request(method, path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), path
        assert "error=" not in response.headers["WWW-Authenticate"]  # none was sent
        forged = {"Authorization": "Bearer not.a.jwt"}
        response = await gw.http.request(method, path, json=body, headers=forged)
        assert response.status_code == 401, (path, response.text)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], path
    await not_started(gw, aid)
    # The same call with the officer's token is through.
    me = await gw.http.get("/me", headers=await gw.as_(OFFICER))
    assert me.status_code == 200, me.text
    assert (me.json()["subject"], me.json()["institution"]) == (OFFICER, OWN)
    assert me.json()["roles"] == ["tto-officer"]


async def test_disclose_starts_the_lifecycle(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    response = await disclose(gw, disclosure_request(aid))
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
    # The disclosure names who made it: the officer of the token, not anything in the body.
    disclosed = await event_row(gw, aid, "disclosed")
    assert disclosed["source"] == f"institution:{OFFICER}"
    assert disclosed["actor"]["subject"] == OFFICER
    assert (disclosed["actor"]["role"], disclosed["actor"]["institution"]) == ("tto-officer", OWN)


async def test_duplicate_disclosure_is_a_no_op(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    first = await disclose(gw, disclosure_request(aid))
    assert first.status_code == 201, first.text
    again = await disclose(gw, disclosure_request(aid))
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
    assert (await disclose(gw, disclosure_request(aid))).status_code == 201
    changed = disclosure_request(aid, title="Another invention entirely")
    response = await disclose(gw, changed)
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "disclosure.achievement_id"
    # Another institution's officer learns only that the id is taken, not what it holds.
    theirs = disclosure_request(aid, institution=other_institution())
    response = await disclose(gw, theirs, as_=OTHER_OFFICER)
    assert response.status_code == 409, response.text
    assert "Low-power" not in response.text and OWN not in response.text


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
    response = await disclose(gw, bad)
    assert response.status_code == 422, response.text
    assert {"disclosure.inventors", "disclosure.trl", "disclosure.funding.0"} <= fields(response)
    assert "confidential" not in response.text  # input values are never echoed
    await not_started(gw, aid)


async def test_malformed_json_and_float_money_are_422(gateway_stack: GatewayStack) -> None:
    gw = gateway_stack
    officer = await gw.as_(OFFICER)
    broken = await gw.http.post(
        "/achievements",
        content=b"{not json",
        headers={**officer, "Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    body = disclosure_request(new_id())
    body["asking_price"] = 500000.1
    response = await disclose(gw, body)
    assert response.status_code == 422, response.text
    assert "asking_price" in fields(response)


async def test_review_from_outside_the_panel_is_refused(gateway_stack: GatewayStack) -> None:
    """Only the assigned panel reviews, each as themselves; an expert on no panel finds
    nothing; a panel expert reads a brief (not the others' reviews); the event names them."""
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    # An expert not on the panel: the achievement does not exist for them.
    response = await gw.http.get(f"/achievements/{aid}", headers=await gw.as_(OUTSIDER))
    assert response.status_code == 404, response.text
    response = await command(gw, aid, "reviews", REVIEW, as_=OUTSIDER)
    assert response.status_code == 404, response.text
    assert "no such achievement" in detail(response)
    # A body cannot speak for another reviewer: the reviewer is the token's subject.
    response = await command(gw, aid, "reviews", {**REVIEW, "reviewer_id": PANEL[0]}, as_=OUTSIDER)
    assert response.status_code == 422, response.text
    assert fields(response) == {"reviewer_id"}
    assert "Extra inputs are not permitted" in response.text
    # Not an expert at all: 403 naming the role that may.
    response = await command(gw, aid, "reviews", REVIEW, as_=OFFICER)
    assert response.status_code == 403, response.text
    assert "expert" in detail(response)
    assert (await state(gw, aid))["reviews"] == []  # nothing of it reached the workflow

    other = await command(gw, aid, "reviews", {**REVIEW, "comment": "B-ONLY remark"}, PANEL[1])
    assert other.status_code == 200, other.text
    assert other.json()["result"] == 1
    # A panel expert reads a brief view: what they review, not who else does or what they said.
    response = await gw.http.get(f"/achievements/{aid}", headers=await gw.as_(PANEL[0]))
    assert response.status_code == 200, response.text
    brief = response.json()
    request = disclosure_request(aid)["disclosure"]
    assert (brief["achievement_id"], brief["institution_code"]) == (aid, OWN)
    assert (brief["title"], brief["field"], brief["summary"]) == (
        request["title"],
        request["field"],
        request["summary"],
    )
    assert brief["stage"] == "evaluation" and brief["my_review"] is None
    for hidden in ("reviews", "reviewers", "disclosure", "asking_price", "seen_event_ids"):
        assert hidden not in brief, hidden
    assert "B-ONLY" not in response.text and PANEL[1] not in response.text

    accepted = await command(gw, aid, "reviews", REVIEW, as_=PANEL[0])
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["result"] == 2
    again = await command(gw, aid, "reviews", REVIEW, as_=PANEL[0])
    assert again.status_code == 409, again.text  # the workflow's rule: one review each
    assert "already reviewed" in detail(again)
    mine = (await gw.http.get(f"/achievements/{aid}", headers=await gw.as_(PANEL[0]))).json()
    assert mine["my_review"]["reviewer_id"] == PANEL[0]
    assert [r["reviewer_id"] for r in (await state(gw, aid))["reviews"]] == [PANEL[1], PANEL[0]]

    async def reviewed_by_a() -> bool:
        row = await gw.db.fetchrow(
            "SELECT actor FROM lifecycle_events WHERE achievement_id = $1"
            " AND type = 'review_submitted' AND source = $2",
            aid,
            f"expert:{PANEL[0]}",
        )
        return row is not None

    await eventually(reviewed_by_a)
    actor = await gw.db.fetchval(
        "SELECT actor FROM lifecycle_events WHERE achievement_id = $1"
        " AND type = 'review_submitted' AND source = $2",
        aid,
        f"expert:{PANEL[0]}",
    )
    assert actor["subject"] == PANEL[0] and actor["role"] == "expert", actor
    assert actor["institution"] is None  # experts review for every institution

    # Their list holds it (without the panel); the outsider's does not.
    async def listed_for_a() -> bool:
        items = await list_all(gw, PANEL[0])
        return any(i["achievement_id"] == aid for i in items)

    await eventually(listed_for_a)
    assert all(i["panel"] == [] for i in await list_all(gw, PANEL[0]))
    assert aid not in {i["achievement_id"] for i in await list_all(gw, OUTSIDER)}
    await finish(gw, aid)


async def test_unknown_achievement_is_404(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    officer = await gw.as_(OFFICER)
    assert (await gw.http.get(f"/achievements/{aid}", headers=officer)).status_code == 404
    withdrawal = {"reason": "no longer pursued"}
    assert (await command(gw, aid, "withdraw", withdrawal, OFFICER)).status_code == 404
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
    forged = {**signed(gw, "sstec", body), "X-Webhook-Signature": "v1=" + "0" * 64}
    assert (await gw.http.post("/webhooks/sstec", content=body, headers=forged)).status_code == 401
    wrong_secret = signed(gw, "incubator", body)  # a valid signature, with another system's secret
    response = await gw.http.post("/webhooks/sstec", content=body, headers=wrong_secret)
    assert response.status_code == 401
    stale = signed(gw, "sstec", body, timestamp=int(time.time()) - 3600)
    assert (await gw.http.post("/webhooks/sstec", content=body, headers=stale)).status_code == 401
    unsigned = {"Content-Type": "application/json"}
    assert (
        await gw.http.post("/webhooks/sstec", content=body, headers=unsigned)
    ).status_code == 401
    # A person's bearer token is no substitute for the system's signature.
    bearer = {**unsigned, **await gw.as_(OFFICER)}
    assert (await gw.http.post("/webhooks/sstec", content=body, headers=bearer)).status_code == 401
    # Each exchange signs its own events only: jstec's secret never speaks for sstec's listing.
    other_exchange = signed(gw, "jstec", body)
    response = await gw.http.post("/webhooks/sstec", content=body, headers=other_exchange)
    assert response.status_code == 401, response.text
    response = await gw.http.post("/webhooks/jstec", content=body, headers=other_exchange)
    assert response.status_code == 403, response.text

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
        "/webhooks/sstec", content=body, headers=signed(gw, "sstec", body)
    )
    assert response.status_code == 413


async def test_exchange_webhook_missing_its_data_part_is_422(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    payload = json.loads(bid_hook(aid, "bid-x"))
    del payload["bid"]
    body = json.dumps(payload).encode()
    response = await gw.http.post(
        "/webhooks/sstec", content=body, headers=signed(gw, "sstec", body)
    )
    assert response.status_code == 422, response.text
    assert fields(response) == {"bid"}
    payload = json.loads(bid_hook("x" * 2000, "bid-y"))
    body = json.dumps(payload).encode()
    response = await gw.http.post(
        "/webhooks/sstec", content=body, headers=signed(gw, "sstec", body)
    )
    assert response.status_code == 422, response.text
    assert fields(response) == {"achievement_id"}


async def test_registry_notice_is_recorded_as_refused_with_its_reason(
    gateway_stack: GatewayStack,
) -> None:
    """No lifecycle step takes a registry notice yet: after its 202 it is in the feed as a
    refused event with the reason, not dropped; an unknown achievement is a 404."""
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    body = json.dumps(
        {
            "event_id": "reg-1",
            "type": "registration_confirmed",
            "achievement_id": aid,
            "note": "kept out of the workflow",
        }
    ).encode()
    for _ in range(2):  # the second is a redelivery: no second refusal
        response = await gw.http.post(
            "/webhooks/registry", content=body, headers=signed(gw, "registry", body)
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": True, "event_id": "reg-1"}
    refused = await event_row(gw, aid, "external_event_refused")
    assert refused["source"] == "registry"
    assert refused["payload"] == {
        "type": "registration_confirmed",
        "event_id": "reg-1",
        "system": "registry",
        "reason": "the lifecycle applies no registry event of type registration_confirmed",
    }
    events = [e for e in await feed(gw, OFFICER) if e["achievement_id"] == aid]
    assert [e["type"] for e in events].count("external_event_refused") == 1
    [kept] = (await state(gw, aid))["refused"]
    assert (kept["source"], kept["event_id"]) == ("registry", "reg-1")

    unknown = json.dumps(
        {"event_id": "reg-2", "type": "registration_confirmed", "achievement_id": new_id()}
    ).encode()
    response = await gw.http.post(
        "/webhooks/registry", content=unknown, headers=signed(gw, "registry", unknown)
    )
    assert response.status_code == 404, response.text
    await finish(gw, aid)


async def test_duplicate_exchange_webhook_has_one_effect(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    decision = {"route": "transaction", "reason": "ready to list"}
    decided = await command(gw, aid, "decision", decision, OFFICER)
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"] == "transaction"
    evaluated = await event_row(gw, aid, "evaluated")
    assert evaluated["payload"]["decided_by"] == f"operator:{OFFICER}"
    assert (evaluated["actor"]["subject"], evaluated["actor"]["role"]) == (OFFICER, "tto-officer")

    async def listed() -> bool:
        return bool((await state(gw, aid))["listings"])

    await eventually(listed)
    listing = (await state(gw, aid))["listings"][0]["listing_id"]
    event_id = f"bid-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        body = bid_hook(aid, event_id, listing)
        response = await gw.http.post(
            "/webhooks/sstec", content=body, headers=signed(gw, "sstec", body)
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
    activation = {"modes": ["licence"]}
    response = await command(gw, aid, "activate", activation, OFFICER)
    assert response.status_code == 409
    assert "only a resource can be activated" in response.json()["detail"]
    response = await command(gw, aid, "activate", {**activation, "activated_by": "x"}, OFFICER)
    assert response.status_code == 422, response.text
    assert fields(response) == {"activated_by"}
    go = {"technical_feasible": True, "market_feasible": True}
    # The fund reaches achievements in proof of concept only: in evaluation there is none
    # running, so for the fund there is nothing here (the former 409 is now this 404).
    response = await command(gw, aid, "poc/decision", go, FUND)
    assert response.status_code == 404, response.text
    assert "no proof of concept running" in detail(response)
    response = await command(gw, aid, "poc/decision", go, OFFICER)
    assert response.status_code == 403, response.text
    assert "poc-fund-officer" in detail(response)
    assert (await state(gw, aid))["stage"] == "evaluation"
    await finish(gw, aid)


async def test_closed_lifecycle_refuses_updates_and_webhooks(gateway_stack: GatewayStack) -> None:
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid)
    withdrawal = {"reason": "the team left"}
    response = await command(gw, aid, "withdraw", withdrawal, OFFICER)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "withdrawing"
    await gw.client.get_workflow_handle(workflow_id(aid)).result()
    assert (await state(gw, aid))["stage"] == "withdrawn"  # still readable once closed
    again = await command(gw, aid, "withdraw", withdrawal, OFFICER)
    assert again.status_code == 409, again.text
    body = bid_hook(aid, "bid-late")
    late = await gw.http.post("/webhooks/sstec", content=body, headers=signed(gw, "sstec", body))
    assert late.status_code == 409, late.text


async def test_serve_gateway_keeps_the_process_signal_handlers(
    gateway_stack: GatewayStack,
) -> None:
    gw = gateway_stack
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    # There is no unauthenticated mode: without an issuer the gateway does not start.
    no_issuer = gw.settings.model_copy(update={"oidc_issuer": None})
    with pytest.raises(SystemExit, match="ACHIEVEMENTS_OIDC_ISSUER"):
        await serve_gateway(gw.client, no_issuer, "127.0.0.1", port)
    task = asyncio.create_task(serve_gateway(gw.client, gw.settings, "127.0.0.1", port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def up() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up)
            # It verifies tokens against the settings' issuer, as the session's gateway does.
            me = await http.get("/me", headers=await gw.as_(OFFICER))
            assert me.status_code == 200, me.text
            assert (await http.get("/me")).status_code == 401
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
    # No proof of concept running: accepted, and recorded as refused with the reason.
    assert response.status_code == 202, response.text
    refused = await event_row(gw, aid, "external_event_refused")
    assert refused["source"] == "poc-fund"
    assert refused["payload"]["reason"] == "no proof of concept is running (stage evaluation)"
    assert refused["payload"]["event"] == {"milestone_id": "m1", "achieved": "true"}
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

    # Acknowledged: in evaluation an incubator event has no effect, and says why.
    async def both_refused() -> bool:
        return len((await state(gw, aid))["refused"]) == 2

    await eventually(both_refused)
    current = await state(gw, aid)
    assert current["incubation_milestones"] == []
    assert [(r["source"], r["event_id"], r["reason"]) for r in current["refused"]] == [
        ("poc-fund", "poc-1", "no proof of concept is running (stage evaluation)"),
        ("incubator", "inc-3", "incubator events count in incubation, not in evaluation"),
    ]
    await finish(gw, aid)
    # A closed lifecycle records nothing more: the fund is told so.
    response = await gw.http.post(
        "/webhooks/poc-fund", content=report, headers=signed(gw, "poc-fund", report)
    )
    assert response.status_code == 409, response.text


def incubator_hook(aid: str, type: str, event_id: str, **fields: Any) -> bytes:
    return json.dumps(
        {"type": type, "achievement_id": aid, "event_id": event_id, **fields}
    ).encode()


async def test_incubator_events_before_the_company_are_held_then_applied(
    gateway_stack: GatewayStack,
) -> None:
    """An admission answered 202 before the company exists is held, and applied (with the
    real registry's equity registration) once the company is founded."""
    gw, aid = gateway_stack, new_id()
    await disclose_to_evaluation(gw, aid, intended_modes=["equity_investment"])
    decision = {"route": "transaction", "reason": "ready for a company"}
    response = await command(gw, aid, "decision", decision, OFFICER)
    assert response.status_code == 200, response.text

    async def waiting_for_company() -> bool:
        current = await state(gw, aid)
        return current["stage"] == "incubation" and current["waiting"] is not None

    await eventually(waiting_for_company)
    admitted = incubator_hook(
        aid,
        "incubator_admitted",
        "inc-adm",
        incubator="Zhangjiang Science Park",
        admitted_at="2025-01-01T00:00:00Z",
    )
    for _ in range(2):  # redelivered: held once
        response = await gw.http.post(
            "/webhooks/incubator", content=admitted, headers=signed(gw, "incubator", admitted)
        )
        assert response.status_code == 202, response.text

    async def held() -> bool:
        return len((await state(gw, aid))["held_incubator_events"]) == 1

    await eventually(held)
    assert (await state(gw, aid))["incubator"] is None
    founded = incubator_hook(
        aid,
        "company_founded",
        "inc-co",
        company_name="Synthetic Accelerators Co",
        credit_code="91310000MA1FL8XQ3X",
        equity_share="25.00",
        valuation="10000000.00",
        founded_at="2025-01-02T00:00:00Z",
    )
    response = await gw.http.post(
        "/webhooks/incubator", content=founded, headers=signed(gw, "incubator", founded)
    )
    assert response.status_code == 202, response.text
    admission = await event_row(gw, aid, "incubator_admitted")
    assert admission["payload"]["incubator"] == "Zhangjiang Science Park"
    await event_row(gw, aid, "equity_registered")  # by the real registry sandbox
    current = await state(gw, aid)
    assert current["held_incubator_events"] == [] and current["refused"] == []
    assert current["incubator"]["event_id"] == "inc-adm"
    await finish(gw, aid)


async def test_another_institutions_achievement_does_not_exist_for_its_officers(
    gateway_stack: GatewayStack,
) -> None:
    """Tenancy: SYN-OTHER's officer finds none of SYN-UNI's achievements or events, the
    regulator reads them all, and the withdrawal names the officer who made it."""
    gw, aid, theirs = gateway_stack, new_id(), new_id()
    await disclose_to_evaluation(gw, aid)
    await disclose_to_evaluation(gw, theirs, OTHER_OFFICER, institution=other_institution())

    response = await gw.http.get(f"/achievements/{aid}", headers=await gw.as_(OTHER_OFFICER))
    assert response.status_code == 404, response.text
    assert detail(response) == "no such achievement"  # the same as for an id nobody has
    withdrawal = {"reason": "not ours to keep"}
    response = await command(gw, aid, "withdraw", withdrawal, OTHER_OFFICER)
    assert response.status_code == 404, response.text
    assert (await state(gw, aid))["stage"] == "evaluation"  # untouched
    # Their own is theirs, and the SYN-UNI officer cannot see it either.
    assert (await state(gw, theirs, OTHER_OFFICER))["disclosure"]["institution"]["code"] == OTHER
    response = await gw.http.get(f"/achievements/{theirs}", headers=await gw.as_(OFFICER))
    assert response.status_code == 404, response.text

    # The projections have both, once recorded.
    async def projected() -> bool:
        ours = {i["achievement_id"] for i in await list_all(gw, REGULATOR, {"institution": OWN})}
        other = {i["achievement_id"] for i in await list_all(gw, OTHER_OFFICER)}
        return aid in ours and theirs in other

    await eventually(projected)
    regulator_rows = await list_all(gw, REGULATOR, {"institution": OWN})
    assert aid in {i["achievement_id"] for i in regulator_rows}
    assert {i["institution_code"] for i in regulator_rows} == {OWN}
    assert (await state(gw, aid, REGULATOR))["achievement_id"] == aid  # the whole state

    listed = await list_all(gw, OTHER_OFFICER)
    assert theirs in {i["achievement_id"] for i in listed}
    assert {i["institution_code"] for i in listed} == {OTHER}
    assert aid not in {i["achievement_id"] for i in listed}
    events = await feed(gw, OTHER_OFFICER)
    assert theirs in {e["achievement_id"] for e in events}
    assert {e["institution_code"] for e in events} == {OTHER}
    own_seq = await gw.db.fetchval(
        "SELECT min(seq) FROM lifecycle_events WHERE achievement_id = $1", aid
    )
    assert own_seq is not None
    seen = await feed(gw, REGULATOR, after=own_seq - 1)
    assert {aid, theirs} <= {e["achievement_id"] for e in seen}
    assert (await feed(gw, OFFICER, after=own_seq - 1))[0]["achievement_id"] == aid

    # The regulator reads everything and changes nothing.
    response = await command(gw, aid, "withdraw", withdrawal, REGULATOR)
    assert response.status_code == 403, response.text
    assert "tto-officer" in detail(response)

    response = await command(gw, aid, "withdraw", {"reason": "the team left"}, OFFICER)
    assert response.status_code == 200, response.text
    await gw.client.get_workflow_handle(workflow_id(aid)).result()
    withdrawn = await event_row(gw, aid, "withdrawn")
    actor = withdrawn["actor"]
    assert (actor["subject"], actor["role"], actor["institution"]) == (OFFICER, "tto-officer", OWN)
    await finish(gw, theirs, OTHER_OFFICER)


async def test_only_an_approver_exempts_from_mandatory_listing(
    gateway_stack: GatewayStack,
) -> None:
    gw, aid = gateway_stack, new_id()
    municipal = [
        {
            "kind": "municipal_finance",
            "project_code": "SH-EXEMPT",
            "transformation_deadline": "2040-01-01",
        }
    ]
    await disclose_to_evaluation(gw, aid, funding=municipal)
    exemption = {"justification": "a statutory national-security exception applies"}

    response = await command(gw, aid, "exemption", exemption, OFFICER)
    assert response.status_code == 403, response.text
    assert "approver" in detail(response)
    response = await command(gw, aid, "exemption", exemption, OTHER_APPROVER)
    assert response.status_code == 404, response.text
    response = await command(gw, aid, "exemption", {**exemption, "approved_by": "x"}, APPROVER)
    assert response.status_code == 422, response.text
    assert fields(response) == {"approved_by"}
    assert (await state(gw, aid))["mandatory_listing_exempted"] is False

    response = await command(gw, aid, "exemption", exemption, APPROVER)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "exempted"
    # Past the gateway, the workflow's own rules answer: 409, not 401/403/404.
    again = await command(gw, aid, "exemption", exemption, APPROVER)
    assert again.status_code == 409, again.text
    assert "already exempted" in detail(again)
    event = await event_row(gw, aid, "mandatory_listing_exempted")
    assert event["source"] == f"operator:{APPROVER}"
    actor = event["actor"]
    assert (actor["subject"], actor["role"], actor["institution"]) == (APPROVER, "approver", OWN)
    await finish(gw, aid)


async def test_officers_disclose_for_their_own_institution_with_a_full_panel(
    gateway_stack: GatewayStack,
) -> None:
    gw = gateway_stack
    ids = [new_id() for _ in range(6)]
    # For another institution: 403 naming it.
    response = await disclose(gw, disclosure_request(ids[0], institution=other_institution()))
    assert response.status_code == 403, response.text
    assert OTHER in detail(response)
    # Who discloses is the token's subject: a body that names someone is refused.
    response = await disclose(gw, {**disclosure_request(ids[1]), "disclosed_by": OFFICER})
    assert response.status_code == 422, response.text
    assert fields(response) == {"disclosed_by"}
    assert "Extra inputs are not permitted" in response.text
    # The panel is required, without repeats, and at least the policy's reviewer count (3).
    for aid, reviewers in (
        (ids[2], PANEL[:2]),
        (ids[3], [PANEL[0], PANEL[0], PANEL[1]]),
        (ids[4], None),
    ):
        body = disclosure_request(aid)
        if reviewers is None:
            del body["reviewers"]
        else:
            body["reviewers"] = reviewers
        response = await disclose(gw, body)
        assert response.status_code == 422, (reviewers, response.text)
        assert fields(response) == {"reviewers"}, reviewers
    short = await disclose(gw, {**disclosure_request(ids[2]), "reviewers": PANEL[:2]})
    assert "at least 3" in short.text
    # Not an officer: 403 naming the role that may.
    response = await disclose(gw, disclosure_request(ids[5]), as_=APPROVER)
    assert response.status_code == 403, response.text
    assert "tto-officer" in detail(response)
    for aid in ids:
        await not_started(gw, aid)
