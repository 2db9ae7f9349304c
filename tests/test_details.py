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
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
import typer.main
from helpers import scenarios
from helpers.canned_systems import CannedSystems
from helpers.eventually import assert_eventually
from helpers.lifecycle import (
    Handle,
    deal,
    finish,
    payment,
    start,
    state,
    to_transaction,
    today,
    until,
)
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from cli.main import app
from cli.samples import scenario
from schemas.evaluation import OperatorDecision, Recommendation
from schemas.events import LifecycleEvent
from schemas.lifecycle import AttentionReason, LifecycleState, Stage, StageEntry, Waiting
from schemas.policy import DEFAULT_POLICY
from schemas.registry_api import AchievementRegistration, RegisterAchievementRequest
from schemas.transaction import Listing, ListingStatus, PricingMethod
from schemas.views import AchievementView
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


# ---------------------------------------------------------------------------- pure rules

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _state(stage: Stage, **changes: object) -> LifecycleState:
    sc = scenario(0, "DETAILS", date(2026, 1, 1))  # municipal finance: the clock runs
    s = LifecycleState(
        achievement_id=sc.disclosure.achievement_id,
        workflow_id="wf",
        disclosure=sc.disclosure,
        policy=DEFAULT_POLICY,
        exchanges=sc.exchanges,
        reviewers=sc.reviewers,
        asking_price=sc.asking_price,
        pricing=sc.pricing,
        stage=stage,
        timeline=[StageEntry(stage=stage, entered_at=NOW - timedelta(days=40))],
    )
    return s.model_copy(update=changes)


def _due_attribute(s: LifecycleState) -> date | None:
    [update] = [u for u in rules.search_attributes(s) if u.key == sa.MANDATORY_LISTING_DUE]
    return update.value.date() if isinstance(update.value, datetime) else None


def test_the_mandatory_due_date_means_an_open_obligation_in_the_row_and_the_ui() -> None:
    open_listing = Listing(
        exchange="sstec",
        listing_id="L-1",
        status=ListingStatus.OPEN,
        asking_price=Decimal("1.00"),
        pricing=PricingMethod.AGREEMENT,
        listed_at=NOW,
        publicity_ends_at=NOW,
    )
    armed = _state(Stage.EVALUATION)
    assert armed.disclosure.municipal_deadline is not None
    cases = {
        "armed": (armed, armed.disclosure.municipal_deadline),
        "exempted": (_state(Stage.EVALUATION, mandatory_listing_exempted=True), None),
        "on the market": (_state(Stage.TRANSACTION, listings=[open_listing]), None),
        "listed under the clock": (
            _state(Stage.TRANSACTION, mandatory_listing_triggered=True),
            None,
        ),
        "ending": (_state(Stage.REPORTING), None),
    }
    for name, (s, expected) in cases.items():
        row = rules.view(s, NOW).mandatory_listing_due
        assert row == _due_attribute(s) == expected, name


def test_details_say_overdue_since_and_who_must_act() -> None:
    due = NOW - timedelta(days=3)
    action = details.next_action("A-1", details.DECIDE, who="an institution officer")
    s = _state(Stage.EVALUATION)
    w = Waiting(
        on="an operator's routing decision",
        until=due,
        next_action=action,
        attention_since=due,
        attention_reason=AttentionReason.REVIEW_ESCALATED,
    )
    text = details.waiting(s, w, NOW)
    first = text.splitlines()[0]
    assert first.startswith("**Evaluation** (since 2026-04-22): waiting for an operator's")
    assert "overdue since 2026-05-29 12:00 UTC" in first
    assert "Needs a person since 2026-05-29 12:00 UTC (`review_escalated`)" in text
    assert "Next: an institution officer: `achievements decide A-1 --route" in text
    # Before its deadline the same wait reads "by", never "overdue".
    early = details.waiting(s, w.model_copy(update={"until": NOW + timedelta(days=1)}), NOW)
    assert "by 2026-06-02 12:00 UTC" in early and "overdue" not in early
    row = rules.view(s.model_copy(update={"waiting": w}), NOW)
    assert (row.needs_attention_since, row.attention_reason, row.next_action) == (
        due,
        "review_escalated",
        action,
    )
    [since, reason] = rules.attention_attributes(s.model_copy(update={"waiting": w}))
    assert (since.value, reason.value) == (due, "review_escalated")


# ---------------------------------------------------------------------------- fast layer


class FailingRegistry(CannedSystems):
    """The registry fails (retryably, as in an outage) until the test lets it answer; the
    projection keeps the last row each lifecycle wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.outage = True
        self.attempts = 0
        self.rows: dict[str, AchievementView] = {}

    @activity.defn(name="projection.record_events")
    async def record_events(self, events: list[LifecycleEvent], view: AchievementView) -> int:
        self.rows[view.workflow_id] = view
        return await super().record_events(events, view)

    def attention(self, workflow_id: str) -> tuple[datetime | None, str | None]:
        row = self.rows[workflow_id]
        return row.needs_attention_since, row.attention_reason

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
    assert systems.attention(handle.id) == (escalated_at, "review_escalated")  # the row written

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
    assert systems.attention(handle.id) == (None, None)
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN
    assert "**Withdrawn**" in await current_details(handle)


async def test_an_overdue_instalment_needs_a_person_until_it_is_paid(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: FailingRegistry
) -> None:
    systems.outage = False
    sc = scenarios.cooperative_development(await today(time_skipping_env))
    policy = DEFAULT_POLICY.model_copy(update={"payment_grace": timedelta(days=10)})
    handle = await start(time_skipping_env.client, worker.task_queue, sc, policy)
    listing = (await to_transaction(handle, sc)).listings[0]
    text = await details_matching(handle, "**Transaction**", "a deal on the exchange (publicity")
    assert "`POST /webhooks/{system}`" in text and "overdue" not in text
    st = await state(handle)
    assert st.waiting is not None and st.waiting.until is None  # publicity end: no deadline

    await time_skipping_env.sleep(DEFAULT_POLICY.publicity_period + timedelta(minutes=1))
    the_deal = deal(listing.listing_id, listing.exchange, instalments=2, amount="1000.00")
    await handle.signal(AchievementLifecycle.exchange_deal, the_deal)
    await until(handle, lambda s: s.contract is not None and s.waiting is not None)
    await details_matching(handle, "instalment 1 of 2, by ")
    await time_skipping_env.sleep(timedelta(days=11))
    st = await until(handle, lambda s: s.overdue_instalments == [1], what="the overdue")
    text = await details_matching(
        handle, "overdue instalment 1 of 2", "overdue since", "(`payment_overdue`)"
    )
    assert f"`achievements withdraw {st.achievement_id}" in text
    assert st.waiting is not None and st.waiting.until is not None
    assert st.waiting.attention_reason is AttentionReason.PAYMENT_OVERDUE
    assert st.waiting.attention_since == st.waiting.until
    assert systems.attention(handle.id) == (st.waiting.until, "payment_overdue")

    await handle.signal(AchievementLifecycle.exchange_payment, payment(the_deal, 1, "500.00"))
    st = await until(handle, lambda s: len(s.payments) == 1 and s.waiting is not None)
    text = await details_matching(handle, "instalment 2 of 2, by ")
    assert "overdue" not in text and "Needs a person" not in text
    assert rules.view(st, datetime.now(UTC)).needs_attention_since is None
    assert systems.attention(handle.id) == (None, None)  # settled with the payment's event
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


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
