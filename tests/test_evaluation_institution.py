"""Evaluation by an evaluation institution (plan item 6, issue 13 item 4), on real servers.

The SLA (reminder through the registry, escalation to an operator) runs on the time-skipping
server with the real activities (registry sandbox over HTTP, embedded PostgreSQL); the test
plays the registry's relay by signalling the report. Everything else goes through the real
gateway on the dev server: the disclosure asks for the institution, the registry sandbox plays
it and delivers its signed report after a delay over real HTTP, and forged or misdirected
reports are refused and recorded.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from conftest import Stack
from gateway_requests import disclosure_request
from helpers import scenarios
from helpers.eventually import assert_eventually
from helpers.lifecycle import (
    event_types,
    finish,
    record_history,
    rejection,
    start,
    state,
    today,
    until,
)
from temporalio.testing import WorkflowEnvironment

from cli.demo import Parties, Tracked, drive
from gateway.signing import sign
from schemas.evaluation import Recommendation
from schemas.evaluation_institution import InstitutionReport
from schemas.lifecycle import Stage
from schemas.policy import DEFAULT_POLICY
from workers.worker import WorkerGroup, build_worker
from workflows.ids import workflow_id
from workflows.lifecycle import AchievementLifecycle

OFFICER = "officer.syn-uni"
HIGH = {"novelty": 4, "maturity": 4, "market": 4, "ip_strength": 4}


def evaluator_code() -> str:
    """Each test its own institution, so the sandbox's behaviour for it is the test's own."""
    return f"SYN-EVAL-{uuid.uuid4().hex[:6].upper()}"


async def events(db: asyncpg.Pool, achievement_id: str, type: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT source, payload FROM lifecycle_events WHERE achievement_id = $1 AND type = $2"
        " ORDER BY seq",
        achievement_id,
        type,
    )
    return [{"source": r["source"], **r["payload"]} for r in rows]


async def behave(stack: Stack, code: str, **behaviour: Any) -> None:
    """Tell the registry sandbox how evaluation institution `code` answers."""
    url = f"{stack.settings.registry_url}/sandbox/evaluators/{code}"
    response = await stack.http.put(url, json=behaviour)
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------ time-skipping: the SLA


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, stack: Stack, task_queue: str
) -> AsyncIterator[WorkerGroup]:
    async with build_worker(time_skipping_env.client, stack.deps, task_queue, stack.settings) as w:
        yield w


async def test_policy_routes_to_institution_with_reminder_and_escalation(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, stack: Stack, db: asyncpg.Pool
) -> None:
    """The policy makes an institution the default for the field: it is asked through the
    registry, reminded through the registry at the review SLA, escalated to an operator after
    the grace; its report, still taken then, routes (a low score: the resource pool)."""
    code = evaluator_code()
    await behave(stack, code, reports=False)  # the institution stays silent
    sc = scenarios.transfer_then_company(await today(time_skipping_env))
    policy = DEFAULT_POLICY.model_copy(
        update={"evaluation_institutions": {sc.disclosure.field: code}}
    )
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, policy)
    st = await until(handle, lambda s: s.evaluation_request is not None)
    assert st.evaluator == code and st.stage is Stage.EVALUATION
    assert st.waiting is not None and code in st.waiting.on and st.waiting.until is not None
    request_number = st.evaluation_request.request_number  # type: ignore[union-attr]
    [requested] = await events(db, aid, "evaluation_requested")
    assert requested["evaluator"] == code and requested["request_number"] == request_number
    # The panel does not review what an institution evaluates.
    assert "evaluates, not the panel" in await rejection(
        handle.execute_update(AchievementLifecycle.submit_review, sc.reviews()[0])
    )

    await time_skipping_env.sleep(timedelta(days=31))
    st = await until(handle, lambda s: s.review_reminded)
    assert not st.review_escalated
    [reminder] = await events(db, aid, "review_reminder")
    assert reminder["institution_told"] is True and reminder["by"] == "institution"
    records = await stack.records("registry")
    assert records["evaluation_reminders"].get(aid) == 1

    await time_skipping_env.sleep(timedelta(days=8))
    st = await until(handle, lambda s: s.review_escalated)
    assert st.waiting is not None and "operator" in st.waiting.on and code in st.waiting.on
    [escalated] = await events(db, aid, "review_escalated")
    assert "operator" in escalated["next_step"]

    report = InstitutionReport(
        **{"novelty": 2, "maturity": 2, "market": 1, "ip_strength": 2},
        recommendation=Recommendation.RESOURCE,
        event_id=f"{request_number}/report",
        achievement_id=aid,
        request_number=request_number,
        evaluator=code,
        report_number=f"{request_number}-R",
        signed_by="Chief appraiser",
        reported_at=datetime.now(UTC),
    )
    await handle.signal(AchievementLifecycle.evaluation_report, report)
    st = await until(handle, lambda s: s.stage is Stage.RESOURCE)
    assert st.evaluation is not None and st.evaluation.route is Recommendation.RESOURCE
    assert st.evaluation.decided_by == f"evaluation institution {code}"
    [evaluated] = await events(db, aid, "evaluated")
    assert (evaluated["by"], evaluated["evaluator"]) == ("institution", code)
    assert evaluated["mean_score"] == "1.75"
    types = await event_types(db, aid)
    assert "review_submitted" not in types and types.count("evaluation_reported") == 1
    await record_history(handle, "evaluation_by_institution_escalated")
    await finish(handle)


async def test_a_report_before_the_receipt_is_held_then_checked(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, stack: Stack, db: asyncpg.Pool
) -> None:
    """A relay fast enough to overtake the request's answer: the report is held, not refused
    for want of a request, and checked once the receipt says which request it must answer
    (here another one: refused then, with the reason). The registry is slowed by its own
    fault injection, so the report surely comes first."""
    code = evaluator_code()
    await behave(stack, code, reports=False)
    sc = scenarios.transfer_then_company(await today(time_skipping_env))
    faults_url = f"{stack.settings.registry_url}/sandbox/faults"
    slow = await stack.http.put(faults_url, json={"latency_ms": 2500, "webhook_delay_ms": 0})
    assert slow.status_code == 200, slow.text
    try:
        handle = await start(
            time_skipping_env.client,
            worker.task_queue,
            dataclasses.replace(sc, evaluated_by=code),
            DEFAULT_POLICY,
        )

        async def requesting() -> None:
            # Not `until`: it waits for the outbox, which is flushed only after the request.
            assert (await state(handle)).search is not None

        await assert_eventually(requesting, what="the technology search")
        report = InstitutionReport(
            **HIGH,
            recommendation=Recommendation.TRANSACTION,
            event_id="early-report",
            achievement_id=sc.disclosure.achievement_id,
            request_number="EVR-OTHER-1",
            evaluator=code,
            report_number="EVR-OTHER-1-R",
            signed_by="Chief appraiser",
            reported_at=datetime.now(UTC),
        )
        await handle.signal(AchievementLifecycle.evaluation_report, report)

        async def held() -> None:
            st = await state(handle)
            assert st.evaluation_request is None and st.held_report == report, st.refused

        await assert_eventually(held, what="the report held for the receipt")
    finally:
        await stack.http.put(faults_url, json={"webhook_delay_ms": 0})
    st = await until(handle, lambda s: s.evaluation_request is not None and bool(s.refused))
    assert st.held_report is None and st.institution_report is None
    [refused] = await events(db, sc.disclosure.achievement_id, "external_event_refused")
    assert refused["reason"].startswith("the report answers request EVR-OTHER-1, not")
    await finish(handle)


# ------------------------------------------------------------------ dev server: the gateway


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(dev_env: WorkflowEnvironment, stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The stack's real gateway, and a real worker on the queue it starts lifecycles on."""
    async with (
        build_worker(dev_env.client, stack.deps, stack.settings.task_queue, stack.settings),
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as http,
    ):
        yield http


async def disclose(http: httpx.AsyncClient, stack: Stack, evaluation: dict[str, Any] | None) -> str:
    aid = f"EV-{uuid.uuid4().hex[:10].upper()}"
    body = disclosure_request(aid)
    if evaluation is not None:
        body |= {"evaluation": evaluation, "reviewers": []}
    response = await http.post("/achievements", json=body, headers=await stack.headers(OFFICER))
    assert response.status_code == 201, response.text
    return aid


async def view(http: httpx.AsyncClient, stack: Stack, aid: str) -> dict[str, Any]:
    response = await http.get(f"/achievements/{aid}", headers=await stack.headers(OFFICER))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settled(http: httpx.AsyncClient, stack: Stack, aid: str, check: Any) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def matched() -> None:
        seen[:] = [await view(http, stack, aid)]
        # An empty outbox: every event so far is in PostgreSQL for the test to read.
        assert check(seen[0]) and not seen[0]["outbox"], (
            f"stage={seen[0]['stage']} waiting={seen[0].get('waiting')}"
        )

    await assert_eventually(matched, within=60, what=f"the state of {aid} to match")
    return seen[0]


async def withdraw(http: httpx.AsyncClient, stack: Stack, aid: str) -> None:
    response = await http.post(
        f"/achievements/{aid}/withdraw",
        json={"reason": "test over"},
        headers=await stack.headers(OFFICER),
    )
    assert response.status_code == 200, response.text


def relayed(stack: Stack, report: dict[str, Any], secret: str | None = None) -> dict[str, str]:
    body = json.dumps(report).encode()
    key = secret or stack.settings.webhook_secret("registry").get_secret_value()
    return {**sign(key, body), "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("scores", "recommendation", "stage", "route"),
    [
        (HIGH, "transaction", "transaction", "transaction"),
        ({**HIGH, "maturity": 2, "market": 2}, "proof_of_concept", "proof_of_concept", None),
        (
            {"novelty": 2, "maturity": 1, "market": 2, "ip_strength": 2},
            "resource",
            "resource",
            None,
        ),
        # No municipal money: an abandon recommendation under 2.5 abandons it.
        (
            {"novelty": 1, "maturity": 1, "market": 2, "ip_strength": 1},
            "abandon",
            "abandoned",
            "abandon",
        ),
    ],
    ids=["go", "immature", "resource", "no-go"],
)
async def test_requested_institution_reports_through_the_registry_and_routes(
    gateway: httpx.AsyncClient,
    stack: Stack,
    db: asyncpg.Pool,
    scores: dict[str, int],
    recommendation: str,
    stage: str,
    route: str | None,
) -> None:
    """The disclosure asks for an institution (no panel named): the registry sandbox plays
    it and relays its signed report after a delay, over real HTTP; the report routes as the
    panel's mean would (>= 3.5 and TRL 6: the market; >= 2.5: proof of concept; else resource)."""
    code = evaluator_code()
    await behave(
        stack,
        code,
        report_after_seconds=0.5,
        scores={**scores, "recommendation": recommendation, "comment": "sandbox report"},
    )
    aid = await disclose(gateway, stack, {"by": "institution", "institution": code})
    body = await settled(gateway, stack, aid, lambda s: s["stage"] == stage)
    assert body["evaluation"]["decided_by"] == f"evaluation institution {code}"
    [reported] = await events(db, aid, "evaluation_reported")
    assert reported["source"] == f"evaluator:{code}" and reported["evaluator"] == code
    [evaluated] = await events(db, aid, "evaluated")
    assert evaluated["by"] == "institution" and evaluated["route"] == (route or stage)
    assert evaluated["report_number"] == reported["report_number"]
    records = await stack.records("registry")
    assert records["evaluation_requests"] == {**records["evaluation_requests"], aid: 1}
    if stage == "abandoned":
        [abandoned] = await events(db, aid, "abandoned")
        assert abandoned["reason"] == "abandoned after evaluation"
    else:
        await withdraw(gateway, stack, aid)


async def test_forged_misdirected_duplicate_and_late_reports(
    gateway: httpx.AsyncClient, stack: Stack, db: asyncpg.Pool
) -> None:
    """A forged signature is a 401 and reaches nothing; a report answering another
    achievement's request, a second report, and one after an operator decided are each
    accepted (202) and recorded as refused with the reason, never lost."""
    silent, decided_code = evaluator_code(), evaluator_code()
    await behave(stack, silent, reports=False)
    await behave(stack, decided_code, reports=False)
    a = await disclose(gateway, stack, {"by": "institution", "institution": silent})
    b = await disclose(gateway, stack, {"by": "institution", "institution": decided_code})
    st_a = await settled(gateway, stack, a, lambda s: s.get("evaluation_request") is not None)
    st_b = await settled(gateway, stack, b, lambda s: s.get("evaluation_request") is not None)
    number_a = st_a["evaluation_request"]["request_number"]
    number_b = st_b["evaluation_request"]["request_number"]

    def report(aid: str, number: str, code: str, n: int) -> dict[str, Any]:
        return {
            "type": "evaluation_report",
            "event_id": f"{number}/forged-or-not-{n}",
            "achievement_id": aid,
            "request_number": number,
            "evaluator": code,
            "report_number": f"{number}-R{n}",
            "signed_by": "Chief appraiser",
            "reported_at": datetime.now(UTC).isoformat(),
            **HIGH,
            "recommendation": "transaction",
        }

    # Forged: signed with a secret that is not the registry's.
    forged = report(a, number_a, silent, 1)
    body = json.dumps(forged).encode()
    headers = relayed(stack, forged, secret="not-the-registry-secret-at-all")
    response = await gateway.post("/webhooks/registry", content=body, headers=headers)
    assert response.status_code == 401, response.text

    # To A, but answering B's request: refused and recorded in A; B untouched.
    misdirected = report(a, number_b, decided_code, 2)
    body = json.dumps(misdirected).encode()
    response = await gateway.post(
        "/webhooks/registry", content=body, headers=relayed(stack, misdirected)
    )
    assert response.status_code == 202, response.text
    st_a = await settled(gateway, stack, a, lambda s: len(s["refused"]) == 1)
    assert st_a["stage"] == "evaluation" and st_a["institution_report"] is None
    [refused] = await events(db, a, "external_event_refused")
    assert refused["type"] == "evaluation_report" and refused["system"] == "registry"
    assert refused["reason"] == (
        f"the report answers request {number_b}, not this achievement's request {number_a}"
    )
    assert refused["event"]["event_id"] == misdirected["event_id"]
    assert (await view(gateway, stack, b))["refused"] == []

    # A's own report (through the sandbox), then a second one: the second is refused.
    for copy in (1, 2):
        response = await stack.http.put(
            f"{stack.settings.registry_url}/sandbox/evaluation-requests/{number_a}/reports/{copy}",
            json={**HIGH, "recommendation": "transaction"},
        )
        assert response.status_code == 200, response.text
    await settled(gateway, stack, a, lambda s: len(s["refused"]) == 2)
    second = (await events(db, a, "external_event_refused"))[1]
    assert second["reason"].startswith("a report was already received")
    assert len(await events(db, a, "evaluated")) == 1

    # B: an operator routes it first; the institution's report after that is refused.
    response = await gateway.post(
        f"/achievements/{b}/decision",
        json={"route": "resource", "reason": "the institution is late"},
        headers=await stack.headers(OFFICER),
    )
    assert response.status_code == 200, response.text
    await settled(gateway, stack, b, lambda s: s["stage"] == "resource")
    late = report(b, number_b, decided_code, 3)
    body = json.dumps(late).encode()
    response = await gateway.post("/webhooks/registry", content=body, headers=relayed(stack, late))
    assert response.status_code == 202, response.text
    await settled(gateway, stack, b, lambda s: len(s["refused"]) == 1)
    [refused_b] = await events(db, b, "external_event_refused")
    assert refused_b["reason"].startswith("the evaluation is already decided")
    [evaluated_b] = await events(db, b, "evaluated")
    assert evaluated_b["by"] == "operator"
    for aid in (a, b):
        await withdraw(gateway, stack, aid)


async def test_a_request_the_registry_refuses_escalates_at_once(
    gateway: httpx.AsyncClient, stack: Stack, db: asyncpg.Pool
) -> None:
    """An institution the registry does not accredit: the request is refused for good (422,
    not retried), and the lifecycle escalates to an operator at once, with the reason."""
    code = evaluator_code()
    await behave(stack, code, accredited=False)
    aid = await disclose(gateway, stack, {"by": "institution", "institution": code})
    st = await settled(gateway, stack, aid, lambda s: s["review_escalated"])
    assert st["evaluation_request"] is None and "operator" in st["waiting"]["on"]
    [escalated] = await events(db, aid, "review_escalated")
    assert "not an accredited evaluation institution" in escalated["reason"]
    assert "operator" in escalated["next_step"]
    assert await events(db, aid, "evaluation_requested") == []
    await withdraw(gateway, stack, aid)


async def test_demo_parties_complete_a_lifecycle_evaluated_by_an_institution(
    gateway: httpx.AsyncClient, stack: Stack, db: asyncpg.Pool, dev_env: WorkflowEnvironment
) -> None:
    """The demo's parties (cli/demo.py) drive a transfer whose disclosure asks an institution,
    from the outside only, to completion: nobody reviews; the registry sandbox's institution
    reports on its own (its default delay), and the report routes it to the market."""
    code = evaluator_code()
    base = scenarios.municipal_transfer(datetime.now(UTC).date())
    sc = dataclasses.replace(base, evaluated_by=code, reviewers=[])
    tracked = Tracked(sc)
    await drive(Parties(gateway, stack.settings, stack.tokens), tracked, time.monotonic() + 120)
    assert tracked.state is not None and tracked.state.stage is Stage.COMPLETED, tracked.error
    aid = sc.disclosure.achievement_id
    await dev_env.client.get_workflow_handle(workflow_id(aid)).result()
    types = await event_types(db, aid)
    order = ["evaluation_requested", "evaluation_reported", "evaluated", "listed", "completed"]
    assert list(dict.fromkeys(t for t in types if t in order)) == order
    assert "review_submitted" not in types and "review_reminder" not in types


async def test_disclosure_names_the_field_of_a_bad_evaluation_choice(
    gateway: httpx.AsyncClient, stack: Stack
) -> None:
    """by=institution without a code, or a panel too small for the panel route: 422s that
    name the field."""
    body = disclosure_request(f"EV-{uuid.uuid4().hex[:10].upper()}")
    headers = await stack.headers(OFFICER)
    bad = {**body, "evaluation": {"by": "institution"}}
    response = await gateway.post("/achievements", json=bad, headers=headers)
    assert response.status_code == 422, response.text
    assert "evaluation" in response.text and "institution" in response.text
    no_panel = {**body, "evaluation": {"by": "panel"}, "reviewers": []}
    response = await gateway.post("/achievements", json=no_panel, headers=headers)
    assert response.status_code == 422, response.text
    assert "reviewers" in response.text
