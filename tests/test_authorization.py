"""The authorization matrix: every protected operation, by every role, own and other, on the
real stack with tokens from the real local issuer.

The expectations are read from the table in docs/architecture.md (the one operators read),
not from gateway/permissions.py, so a change to either that the other does not follow fails.
A cell's scope decides the answer: `—` is a 403; a scope the case is inside is "past
authorization" (anything but 401, 403 or 404: the workflow may still refuse with a 409);
outside it, the achievement does not exist for the caller (404) or its rows are absent.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
from gateway_requests import disclosure_request
from identities import OTHER, OWN, PANEL
from temporalio.testing import WorkflowEnvironment

from workers.worker import build_worker

if TYPE_CHECKING:
    from conftest import Stack

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
# Who plays each role: people of tests/identities.py.
PLAYERS = {
    "tto-officer": "officer.syn-uni",
    "approver": "approver.syn-uni",
    "expert": PANEL[0],
    "poc-fund-officer": "officer.poc-fund",
    "regulator": "regulator.shstc",
}
OTHER_PANEL = ["expert-x", "expert.syn-01", "expert.syn-02"]
PAST_AUTHORIZATION = "past authorization"
OPEN = {"GET /healthz", "POST /webhooks/{system}"}  # systems sign; health is for probes
TOKEN_ONLY = {"GET /me"}  # any valid token: who am I


def documented_table() -> dict[str, dict[str, str]]:
    """operation → role → scope ("—" for none), parsed from docs/architecture.md."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- permissions table")[1].split("<!-- end of permissions table")[0]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0].strip("`")] = dict(zip(header[1:], cells[1:], strict=True))
    return table


TABLE = documented_table()


@dataclass
class World:
    stack: Stack
    http: httpx.AsyncClient
    own: str  # SYN-UNI, in evaluation, panel PANEL
    other: str  # SYN-OTHER, in evaluation, panel OTHER_PANEL
    in_poc: str  # SYN-UNI, in proof of concept, panel PANEL

    async def as_(self, role: str | None) -> dict[str, str]:
        return {} if role is None else await self.stack.headers(PLAYERS[role])

    def target(self, operation: str, role: str | None, case: str) -> str:
        """The achievement a case acts on: inside the role's scope for "own", outside else."""
        scope = TABLE[operation].get(role or "", "—")
        if scope == "in proof of concept":
            return self.in_poc if case == "own" else self.own
        return self.own if case == "own" else self.other


async def _until(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(dev_env: WorkflowEnvironment, stack: Stack) -> AsyncIterator[World]:
    settings = stack.settings
    async with (
        build_worker(dev_env.client, stack.deps, settings.task_queue, settings),
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as http,
    ):
        tag = uuid.uuid4().hex[:8].upper()
        ids = {k: f"AZ-{k}-{tag}" for k in ("OWN", "OTHER", "POC")}
        bodies = {
            "OWN": disclosure_request(ids["OWN"]),
            "POC": disclosure_request(ids["POC"]),
            "OTHER": {
                **disclosure_request(ids["OTHER"]),
                "reviewers": OTHER_PANEL,
            },
        }
        bodies["OTHER"]["disclosure"]["institution"] = {
            **bodies["OTHER"]["disclosure"]["institution"],
            "code": OTHER,
            "name": "Synthetic Other University",
        }
        for key, officer in (("OWN", OWN), ("POC", OWN), ("OTHER", OTHER)):
            headers = await stack.headers(f"officer.{officer.lower()}")
            response = await http.post("/achievements", json=bodies[key], headers=headers)
            assert response.status_code == 201, response.text
        regulator = await stack.headers(PLAYERS["regulator"])

        async def stage(aid: str) -> str:
            r = await http.get(f"/achievements/{aid}", headers=regulator)
            return str(r.json()["stage"]) if r.status_code == 200 else ""

        for aid in ids.values():
            await _until(lambda aid=aid: _is(stage(aid), "evaluation"))  # type: ignore[misc]
        # Middling scores from the whole panel route it to proof of concept.
        review = {"novelty": 3, "maturity": 3, "market": 3, "ip_strength": 3}
        for expert in PANEL:
            response = await http.post(
                f"/achievements/{ids['POC']}/reviews",
                json={**review, "recommendation": "proof_of_concept"},
                headers=await stack.headers(expert),
            )
            assert response.status_code == 200, response.text
        await _until(lambda: _is(stage(ids["POC"]), "proof_of_concept"))

        async def projected() -> bool:
            r = await http.get("/achievements", params={"limit": 500}, headers=regulator)
            seen = {i["achievement_id"] for i in r.json()["items"]}
            return {ids["OWN"], ids["OTHER"]} <= seen

        await _until(projected)
        yield World(stack, http, ids["OWN"], ids["OTHER"], ids["POC"])


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


# ---------------------------------------------------------------------------- the calls

BODIES: dict[str, dict[str, Any]] = {
    "reviews": {
        "novelty": 4,
        "maturity": 4,
        "market": 4,
        "ip_strength": 4,
        "recommendation": "transaction",
    },
    "decision": {"route": "resource", "reason": "authorization matrix"},
    "activate": {"modes": ["licence"]},
    "withdraw": {"reason": "authorization matrix, withdrawn at the end"},
    "exemption": {"justification": "authorization matrix: no municipal funding here"},
    "poc/decision": {"technical_feasible": False, "market_feasible": False, "reason": "matrix"},
}


async def call(world: World, operation: str, role: str | None, case: str) -> httpx.Response:
    """One operation, as `role`, on the case's achievement (or with the case's scope)."""
    method, path = operation.split(" ", 1)
    headers = await world.as_(role)
    http = world.http
    if operation == "POST /achievements":
        institution = OWN if case == "own" else OTHER
        body = disclosure_request(f"AZ-NEW-{uuid.uuid4().hex[:8].upper()}")
        body["disclosure"]["institution"]["code"] = institution
        return await http.post("/achievements", json=body, headers=headers)
    if operation == "GET /achievements":
        return await http.get("/achievements", params={"limit": 500}, headers=headers)
    if operation == "GET /events":
        return await http.get("/events", params={"limit": 1000}, headers=headers)
    if operation == "GET /overview":
        params = {"format": "json", **({} if case == "own" else {"institution": OTHER})}
        return await http.get("/overview", params=params, headers=headers)
    if operation == "GET /reports/annual/{year}":
        params = {} if case == "own" else {"institution": OTHER}
        return await http.get(
            f"/reports/annual/{datetime.now(UTC).year}", params=params, headers=headers
        )
    if path.startswith("/funds/"):
        url = path.replace("{institution}", OWN if case == "own" else OTHER)
        if method == "GET":
            return await http.get(url, headers=headers)
        # Without the approver's token: past authorization, refused as input (422).
        body = {"request_id": "matrix", "amount": "1.00", "purpose": "authorization matrix"}
        return await http.post(url, json=body, headers=headers)
    target = world.target(operation, role, case)
    url = path.replace("{achievement_id}", target)
    if method == "GET":
        return await http.get(url, headers=headers)
    action = url.split(f"/{target}/", 1)[1]
    return await http.post(url, json=BODIES[action], headers=headers)


def expected(operation: str, role: str, case: str) -> str:
    scope = TABLE[operation][role]
    if scope == "—":
        return "403"
    if scope == "any institution" or case == "own":
        return PAST_AUTHORIZATION
    if operation == "POST /achievements":
        return "403"  # disclosing for another institution names the institution
    if operation in ("GET /achievements", "GET /events", "GET /overview"):
        return "absent"
    return "404"


def rows(operation: str, response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    found: list[dict[str, Any]] = (
        body["items"] if operation == "GET /achievements" else body["events"]
    )
    return found


# Destructive commands last, so the reads and the routing see the achievements as set up.
ORDER = sorted(TABLE, key=lambda op: ("withdraw" in op, "poc/decision" in op, op))
CASES = [
    pytest.param(op, role, case, id=f"{op} | {role} | {case}")
    for op in ORDER
    for role in PLAYERS
    for case in ("own", "other")
]


@pytest.mark.integration
@pytest.mark.parametrize(("operation", "role", "case"), CASES)
async def test_matrix(world: World, operation: str, role: str, case: str) -> None:
    response = await call(world, operation, role, case)
    want = expected(operation, role, case)
    status = response.status_code
    assert status != 401, response.text
    if want == "403":
        assert status == 403, response.text
        detail = response.json()["detail"]
        # The refusal names what is missing: the roles that may, or the institution.
        assert re.search(r"requires the role|may disclose for that institution only", detail)
    elif want == "404":
        assert status == 404, response.text
    else:
        assert status not in (401, 403, 404), response.text
        assert status < 500, response.text
    if operation in ("GET /achievements", "GET /events") and want != "403":
        assert status == 200, response.text
        found = rows(operation, response)
        ids = {r["achievement_id"] for r in found}
        scope = TABLE[operation][role]
        if scope == "own institution":
            assert {r["institution_code"] for r in found} <= {OWN}
        if scope != "any institution":
            assert world.other not in ids
        if operation == "GET /achievements":
            assert world.own in ids
            if scope == "any institution":
                assert world.other in ids


@pytest.mark.integration
async def test_every_operation_is_in_the_matrix_and_needs_a_token(world: World) -> None:
    spec = (await world.http.get("/openapi.json")).json()
    operations = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations - OPEN - TOKEN_ONLY == set(TABLE), "an operation missing from the table"
    for operation in sorted(operations - OPEN):
        if operation in TOKEN_ONLY:
            response = await world.http.get(operation.split(" ", 1)[1])
        else:
            response = await call(world, operation, None, "own")
        assert response.status_code == 401, (operation, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        secured = spec["paths"][operation.split(" ", 1)[1]][operation.split(" ")[0].lower()]
        assert secured.get("security") == [{"oidc": []}], operation


@pytest.mark.integration
async def test_the_documented_table_is_the_code(world: World) -> None:
    from gateway.permissions import markdown_table

    assert markdown_table() in DOC.read_text(encoding="utf-8")


@pytest.mark.integration
async def test_a_person_with_two_roles_reaches_with_either(world: World) -> None:
    """An officer of SYN-OTHER on a SYN-UNI panel: the expert's reach there, the officer's at
    home; the review is recorded as the expert's."""
    from identities import OFFICER_AND_EXPERT

    stack, http = world.stack, world.http
    aid = f"AZ-TWO-{uuid.uuid4().hex[:8].upper()}"
    body = disclosure_request(aid)
    body["reviewers"] = [OFFICER_AND_EXPERT, *PANEL[1:]]
    officer = await stack.headers("officer.syn-uni")
    assert (await http.post("/achievements", json=body, headers=officer)).status_code == 201
    both = await stack.headers(OFFICER_AND_EXPERT)

    async def readable() -> bool:
        response = await http.get(f"/achievements/{aid}", headers=both)
        return response.status_code == 200 and response.json().get("stage") == "evaluation"

    await _until(readable)
    brief = (await http.get(f"/achievements/{aid}", headers=both)).json()
    assert "summary" in brief and "disclosure" not in brief  # the expert's brief, not the state
    review = {**BODIES["reviews"], "comment": "as an expert"}
    response = await http.post(f"/achievements/{aid}/reviews", json=review, headers=both)
    assert response.status_code == 200, response.text
    # The officer's own institution is still theirs; another institution's withdraw is not.
    assert (await http.get(f"/achievements/{world.other}", headers=both)).status_code == 200
    withdrawal = {"reason": "not mine to withdraw"}
    response = await http.post(f"/achievements/{aid}/withdraw", json=withdrawal, headers=both)
    assert response.status_code == 404

    async def recorded() -> bool:
        actor = await stack.deps.pool.fetchval(
            "SELECT actor FROM lifecycle_events"
            " WHERE achievement_id = $1 AND type = 'review_submitted'",
            aid,
        )
        return actor is not None and actor["role"] == "expert"

    await _until(recorded)
