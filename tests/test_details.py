"""The UI tells the truth: current details at every stage, during a failing external call and
after a deadline; what needs a person as search attributes that agree with the projection row;
every next action names a real command and a real endpoint.

The fast layer (time-skipping server, canned registry and exchange: helpers.canned_systems) for
the details; the dev server for visibility (`NeedsAttentionSince IS NOT NULL`), which the
time-skipping server does not serve. The canned systems stand in for the sandboxes, as in
tests/test_lifecycle_fast.py: these tests are about what the workflow shows, not HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import typer.main
from helpers import scenarios
from helpers.canned_systems import CannedSystems
from helpers.eventually import assert_eventually
from helpers.lifecycle import Handle, finish, start, state, today, until
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from cli.main import app
from schemas.evaluation import OperatorDecision, Recommendation
from schemas.lifecycle import AttentionReason, Stage
from schemas.policy import DEFAULT_POLICY
from schemas.registry_api import AchievementRegistration, RegisterAchievementRequest
from workers.worker import WorkerGroup
from workflows import rules
from workflows import search_attributes as sa
from workflows.lifecycle import AchievementLifecycle, details

ROOT = Path(__file__).resolve().parent.parent


async def current_details(handle: Handle) -> str:
    """What the UI shows under "Current details": the SDK's built-in metadata query."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def details_matching(handle: Handle, *parts: str) -> str:
    async def matched() -> str:
        text = await current_details(handle)
        missing = [p for p in parts if p not in text]
        assert not missing, f"{missing} not in {text!r}"
        return text

    return await assert_eventually(matched, what=f"details with {parts}")


# ---------------------------------------------------------------------------- next actions


def test_every_next_action_names_a_cli_command_and_a_gateway_endpoint() -> None:
    commands = {c.name for c in typer.main.get_command(app).commands.values()}  # type: ignore[attr-defined]
    openapi = json.loads((ROOT / "docs/api/gateway.openapi.json").read_text(encoding="utf-8"))
    for action in details.ALL_NEXT_ACTIONS:
        assert action.method.lower() in openapi["paths"].get(action.path, {}), action.path
        if action.command is not None:
            assert action.command in commands, action.command
    text = details.DECIDE.text("UNI-001")
    assert text.startswith("`achievements decide UNI-001 --route")
    assert "`POST /achievements/UNI-001/decision`" in text


# ---------------------------------------------------------------------------- fast layer


class FailingRegistry(CannedSystems):
    """The registry fails (retryably, as in an outage) until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__()
        self.outage = True
        self.attempts = 0

    @activity.defn(name="registry.register_achievement")
    async def register_achievement(
        self, key: str, request: RegisterAchievementRequest
    ) -> AchievementRegistration:
        if self.outage:
            self.attempts += 1
            await asyncio.sleep(0.2)  # a real outage is no busy loop either
            raise ApplicationError("registry unavailable (503)")
        return await super().register_achievement(key, request)


@pytest.fixture
def systems() -> FailingRegistry:
    return FailingRegistry()


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, systems: FailingRegistry, task_queue: str
) -> AsyncIterator[WorkerGroup]:
    async with systems.serving(time_skipping_env.client, task_queue) as group:
        yield group


async def test_details_name_the_call_then_each_stage_and_mark_what_is_overdue(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: FailingRegistry
) -> None:
    sc = scenarios.municipal_transfer(await today(time_skipping_env))
    aid = sc.disclosure.achievement_id
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    desc = await handle.describe()
    assert "Stages: disclosure" in (await desc.static_details() or "")

    # A retrying registry call: the stage, the system and the call, since when.
    text = await details_matching(
        handle, "**Disclosure**", "calling the registry (register achievement) since", "Pending"
    )
    assert systems.attempts >= 1, text
    systems.outage = False

    # Evaluation: the reviews, by when, and how to give them.
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.waiting is not None)
    text = await details_matching(handle, "**Evaluation**", "expert review(s), by ")
    assert f"`achievements review {aid}" in text and "/reviews`" in text
    assert "overdue" not in text and "Needs a person" not in text
    assert "Mandatory listing due" in text  # municipal money: the clock runs
    st = await state(handle)
    assert rules.view(st, datetime.now(UTC)).needs_attention_since is None

    # Past the SLA and the grace: escalated, overdue since, a person named, and how.
    await time_skipping_env.sleep(
        DEFAULT_POLICY.review_sla + DEFAULT_POLICY.review_escalation_grace + timedelta(days=1)
    )
    st = await until(handle, lambda s: s.review_escalated, what="the escalation")
    text = await details_matching(
        handle, "routing decision", "overdue since", "Needs a person since", "review_escalated"
    )
    assert f"`achievements decide {aid} --route" in text
    assert f"`POST /achievements/{aid}/decision`" in text
    entered = st.stage_since()
    assert st.waiting is not None and entered is not None
    escalated_at = entered + DEFAULT_POLICY.review_sla + DEFAULT_POLICY.review_escalation_grace
    assert st.waiting.attention_reason is AttentionReason.REVIEW_ESCALATED
    assert st.waiting.attention_since == escalated_at == st.waiting.until
    row = rules.view(st, datetime.now(UTC))
    assert (row.needs_attention_since, row.attention_reason) == (escalated_at, "review_escalated")
    assert row.next_action is not None and "achievements decide" in row.next_action

    # The decision moves it on: the details name the new stage, nothing needs a person.
    await handle.execute_update(
        AchievementLifecycle.decide,
        OperatorDecision(route=Recommendation.RESOURCE, decided_by="director", reason="later"),
    )
    st = await until(handle, lambda s: s.stage is Stage.RESOURCE and s.waiting is not None)
    text = await details_matching(handle, "**Resource**", "activation")
    assert "routing decision" not in text and "Needs a person" not in text
    assert f"`achievements activate {aid}" in text
    assert rules.view(st, datetime.now(UTC)).needs_attention_since is None
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN
    assert "**Withdrawn**" in await current_details(handle)


# ---------------------------------------------------------------------------- visibility


@pytest_asyncio.fixture(loop_scope="session")
async def dev_worker(dev_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[WorkerGroup]:
    async with CannedSystems().serving(dev_env.client, task_queue) as group:
        yield group


async def visible(client: Client, query: str) -> set[str]:
    return {w.id async for w in client.list_workflows(query)}


async def test_needs_attention_is_one_visibility_query_and_agrees_with_the_row(
    dev_env: WorkflowEnvironment, dev_worker: WorkerGroup
) -> None:
    # Seconds instead of weeks: the review SLA escalates on the dev server's real clock.
    policy = DEFAULT_POLICY.model_copy(
        update={"review_sla": timedelta(seconds=1), "review_escalation_grace": timedelta(seconds=1)}
    )
    sc = scenarios.municipal_transfer(datetime.now(UTC).date())
    handle = await start(dev_env.client, dev_worker.task_queue, sc, policy)
    st = await until(handle, lambda s: s.review_escalated, within=30, what="the escalation")
    query = f"NeedsAttentionSince IS NOT NULL AND WorkflowId = '{handle.id}'"

    async def listed() -> None:
        assert await visible(dev_env.client, query) == {handle.id}

    await assert_eventually(listed, within=30, what="the lifecycle in the needs-attention query")
    desc = await handle.describe()
    attrs = desc.typed_search_attributes
    row = rules.view(st, datetime.now(UTC))
    assert attrs.get(sa.NEEDS_ATTENTION_SINCE) == row.needs_attention_since
    assert attrs.get(sa.ATTENTION_REASON) == row.attention_reason == "review_escalated"
    # One meaning of the mandatory-listing due date: the open obligation, in both.
    due = attrs.get(sa.MANDATORY_LISTING_DUE)
    assert due is not None and due.date() == row.mandatory_listing_due

    await handle.execute_update(
        AchievementLifecycle.decide,
        OperatorDecision(route=Recommendation.RESOURCE, decided_by="director", reason="later"),
    )
    st = await until(handle, lambda s: s.stage is Stage.RESOURCE)

    async def unlisted() -> None:
        assert await visible(dev_env.client, query) == set()

    await assert_eventually(unlisted, within=30, what="the lifecycle out of the query")
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.NEEDS_ATTENTION_SINCE) is None and attrs.get(sa.ATTENTION_REASON) is None
    assert rules.view(st, datetime.now(UTC)).needs_attention_since is None
    await finish(handle)
