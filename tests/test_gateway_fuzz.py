"""Schemathesis fuzzes every operation of the running gateway's own OpenAPI schema, with all
its checks: no 5xx, every status and header documented, every response matching its schema,
schema-violating requests refused and schema-valid ones accepted (where the schema can say
what valid is: see EXCLUDED_CHECKS).

The schema is read from the session `stack`'s real gateway over loopback HTTP and each case is
sent there, with a real worker on the stack's task queue. Every case carries a real bearer
token from the session's issuer, of the person whose role the operation is for (an officer of
SYN-UNI unless the permission table names another role), so cases get past 401 and 403 into
validation and the workflow. Positive cases of the operations on one achievement go to a live
lifecycle of SYN-UNI, so they reach the workflow's validators and handlers; negative cases get
generated ids too. Every lifecycle started is terminated at the end. Runs are derandomized: a
failure reproduces on every run, and its report carries a curl line.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from identities import OWN, PANEL
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, positive_data_acceptance
from schemathesis.core.result import Err, Ok
from schemathesis.generation.case import Case
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from workers.worker import build_worker
from workflows.ids import poc_workflow_id, workflow_id

if TYPE_CHECKING:
    from conftest import Stack

MAX_EXAMPLES = 30  # per operation and generation mode: about 40 s for the whole run
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # real HTTP and Temporal round trips: timing is not what is tested
    derandomize=True,
    database=None,  # derandomized already; nothing to replay between runs
    # No explain phase: it re-runs cases many times to annotate a failure, slow over HTTP.
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    # The disclosure body is a large nested schema: generation is slow and filters a lot,
    # which is the fuzzer's cost, not a property of the gateway.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
# Every operation the gateway documents; a missing one means the schema did not load whole.
EXPECTED = {
    "GET /healthz",
    "GET /me",
    "GET /achievements",
    "GET /events",
    "GET /reports/annual/{year}",
    "POST /achievements",
    "GET /achievements/{achievement_id}",
    "POST /achievements/{achievement_id}/reviews",
    "POST /achievements/{achievement_id}/decision",
    "POST /achievements/{achievement_id}/activate",
    "POST /achievements/{achievement_id}/withdraw",
    "POST /achievements/{achievement_id}/exemption",
    "POST /achievements/{achievement_id}/poc/decision",
    "POST /webhooks/{system}",
}
# A disclosure has rules across fields that no JSON schema states (inventors' shares summing
# to 100, a panel of at least the policy's size): a schema-valid one is usually refused, by
# design. Those refusals are checked to name the field (test_gateway); every other check runs.
EXCLUDED_CHECKS: dict[str, list[CheckFunction]] = {
    "POST /achievements": [positive_data_acceptance],
}
OFFICER = "officer.syn-uni"
# Who sends an operation, when it is not the officer: the role gateway/permissions.py grants.
PERSONAS = {
    "POST /achievements/{achievement_id}/reviews": PANEL[0],  # on every target's panel
    "POST /achievements/{achievement_id}/exemption": "approver.syn-uni",
    "POST /achievements/{achievement_id}/poc/decision": "officer.poc-fund",
}
GO_NO_GO = "POST /achievements/{achievement_id}/poc/decision"
REPORT = "GET /reports/annual/{year}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker(dev_env: WorkflowEnvironment, stack: Stack) -> AsyncIterator[None]:
    """Fuzzed disclosures start lifecycles; without a worker their queries would only time out."""
    async with build_worker(dev_env.client, stack.deps, stack.settings.task_queue, stack.settings):
        yield


def disclosure(achievement_id: str, modes: list[str]) -> dict[str, Any]:
    """A live target of the officer's institution: municipal money (so an exemption is
    possible), the panel whose first expert reviews, and no modes for the one activate is
    fuzzed on (a resource)."""
    return {
        "disclosure": {
            "achievement_id": achievement_id,
            "title": "Fuzz target",
            "summary": "A lifecycle the fuzzer sends valid commands to.",
            "institution": {
                "code": OWN,
                "name": "Synthetic University",
                "kind": "university",
                "state_owned": True,
            },
            "inventors": [{"name": "Li", "share": "100"}],
            "field": "other",
            "trl": 5,
            "funding": [
                {
                    "kind": "municipal_finance",
                    "project_code": "SH-FUZZ",
                    "transformation_deadline": "2040-01-01",
                }
            ],
            "ownership": {"kind": "institution"},
            "confidentiality": "internal",
            "intended_modes": modes,
            "synthetic": True,
        },
        "reviewers": PANEL,
        "asking_price": "1000.00",
        "pricing": "agreement",
    }


async def live_targets(stack: Stack, client: Client, labels: list[str]) -> dict[str, str]:
    """One running achievement per operation on an achievement, waiting in evaluation (or as a
    resource for activate, in proof of concept for the go/no-go), so positive cases reach the
    workflow's validators and handlers."""
    targets = {label: f"FUZZ-{uuid.uuid4().hex[:10].upper()}" for label in labels}
    officer = await stack.headers(OFFICER)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, headers=officer) as http:

        async def stage_of(aid: str) -> str:
            response = await http.get(f"/achievements/{aid}")
            assert response.status_code == 200, response.text
            return str(response.json()["stage"])

        async def start(label: str, aid: str) -> None:
            modes = [] if label.endswith("/activate") else ["transfer"]
            response = await http.post("/achievements", json=disclosure(aid, modes))
            assert response.status_code == 201, response.text
            deadline = time.monotonic() + 20
            while await stage_of(aid) not in ("evaluation", "resource"):
                assert time.monotonic() < deadline, f"{aid} never left disclosure"
                await asyncio.sleep(0.1)
            if label != GO_NO_GO:
                return
            # The fund reaches achievements in proof of concept only: route this one there.
            decision = {"route": "proof_of_concept", "reason": "a prototype first"}
            response = await http.post(f"/achievements/{aid}/decision", json=decision)
            assert response.status_code == 200, response.text
            poc = client.get_workflow_handle(poc_workflow_id(aid))
            while True:
                try:
                    if (await poc.describe()).status == WorkflowExecutionStatus.RUNNING:
                        return
                except RPCError:
                    pass  # not started yet
                assert time.monotonic() < deadline, f"{aid} never reached proof of concept"
                await asyncio.sleep(0.1)

        await asyncio.gather(*(start(label, aid) for label, aid in targets.items()))
    return targets


def fuzz(
    operation: Any,
    stack: Stack,
    headers: dict[str, str],
    target: str | None,
    calls: Counter[str],
    refused: Counter[str],
    started: set[str],
) -> list[str]:
    """Run one operation's positive and negative cases; the failures, minimised, as text."""
    failures: list[str] = []
    with requests.Session() as session:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Positive cases go to a live achievement; generated ids would only ever find a 404.
            fixed = {"achievement_id": target} if target and mode.is_positive else None

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            def run(case: Case[Any]) -> None:
                # The person's token goes where the case has an Authorization header: a negative
                # case may leave it out, to be refused with a 401.
                positive = case.meta is not None and case.meta.generation.mode.is_positive
                given = case.headers or CaseInsensitiveDict()
                sent = CaseInsensitiveDict(
                    {k: v for k, v in given.items() if k.lower() != "authorization"}
                )
                if positive or len(sent) != len(given):
                    sent.update(headers)
                case.headers = sent
                response = case.call(base_url=stack.gateway_url, session=session, timeout=60)
                calls[f"{case.operation.label} {response.status_code}"] += 1
                if positive and response.status_code in (401, 403):
                    refused[f"{case.operation.label} {response.status_code}"] += 1
                if case.operation.label == "POST /achievements" and response.status_code == 201:
                    started.add(response.json()["achievement_id"])
                case.validate_response(
                    response, excluded_checks=EXCLUDED_CHECKS.get(case.operation.label, [])
                )

            try:
                run()
            except Unsatisfiable:
                # No input can break the schema (no parameters, or a free-form string only):
                # the positive run covers the operation.
                assert mode is GenerationMode.NEGATIVE, f"{operation.label}: nothing generated"
            # Schemathesis raises a FailureGroup (a BaseExceptionGroup): one report per operation
            # and mode, then on to the next.
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


async def test_no_operation_answers_5xx(
    worker: None, stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    schema = await asyncio.to_thread(
        schemathesis.openapi.from_url, f"{stack.gateway_url}/openapi.json", timeout=10
    )
    results = list(schema.get_all_operations())
    invalid = [str(r.err()) for r in results if isinstance(r, Err)]
    assert not invalid, invalid
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert {op.label for op in operations} >= EXPECTED

    on_one = [op.label for op in operations if "{achievement_id}" in op.path]
    started: set[str] = set()
    calls: Counter[str] = Counter()
    refused: Counter[str] = Counter()  # positive cases refused for who sent them
    failures: list[str] = []
    try:
        targets = await live_targets(stack, dev_env.client, on_one)
        started |= set(targets.values())
        for operation in operations:  # nothing excluded
            target = targets.get(operation.label)
            # Fetched per operation: the issuer's tokens last 15 minutes, the whole run longer.
            headers = await stack.headers(PERSONAS.get(operation.label, OFFICER))
            failures += await asyncio.to_thread(
                fuzz, operation, stack, headers, target, calls, refused, started
            )
    finally:
        await _terminate(dev_env.client, started)
    assert not failures, "\n\n".join(failures)
    answered = {key.rsplit(" ", 1)[0] for key in calls}
    assert answered == {op.label for op in operations}  # every operation was really called
    # Generated disclosures are refused (cross-field rules such as shares summing to 100 are
    # beyond the schema): the accepted path is test_gateway's; here they probe validation.
    assert calls["POST /achievements 422"] > 0
    # The live targets made positive cases reach the workflow: accepted, or refused by it.
    for label in on_one:
        assert calls[f"{label} 200"] + calls[f"{label} 409"] > 0, (label, calls)
    # Every positive case carried a valid token of a person allowed the operation: none was
    # refused for who sent it, except webhooks, which answer 401 to anything unsigned (the
    # negative cases also drop or garble the Authorization header: their 401s are expected).
    # Generated disclosures name random institutions, whose 403 is the officer's due.
    allowed = {"POST /webhooks/{system} 401", "POST /achievements 403"}
    assert set(refused) <= allowed, refused

    # Found by this fuzzer: years past the report model's range were a 500; now the path
    # parameter has the model's range, so they are a 422 naming it.
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
        response = await http.get("/reports/annual/2150", headers=await stack.headers(OFFICER))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "path.year"


async def _terminate(client: Client, achievement_ids: set[str]) -> None:
    """Leave no fuzzed lifecycle running on the session's shared task queue."""
    for aid in achievement_ids:
        handle = client.get_workflow_handle(workflow_id(aid))
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate(reason="schemathesis fuzz case")
        except RPCError:
            pass  # closed meanwhile: nothing to leave behind
