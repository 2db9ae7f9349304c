"""Nothing dropped after a 2xx (issue 12, item 5), on the fast layer: the time-skipping server
with canned systems (helpers.canned_systems), as tests/test_lifecycle_fast.py.

Every external event the lifecycle does not apply is recorded as `external_event_refused` with
its reason, and kept in the state for `achievements status`; incubator events that come before
the company are held and applied once it is founded, or refused when incubation ends without
one. A redelivery stays a no-op, never a refusal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from helpers import scenarios
from helpers.canned_systems import CannedSystems
from helpers.lifecycle import Handle, deal, finish, payment, start, state, to_transaction, until
from helpers.lifecycle import today as server_today
from temporalio.testing import WorkflowEnvironment

from cli.samples import Scenario
from schemas.commands import ListingExpired
from schemas.disclosure import TransformationMode
from schemas.incubation import (
    CompanyFounded,
    IncubationExit,
    IncubationMilestone,
    IncubatorAdmission,
)
from schemas.lifecycle import LifecycleState, Stage
from schemas.policy import DEFAULT_POLICY
from schemas.refusals import ExternalEvent
from schemas.transaction import Bid
from workers.worker import WorkerGroup
from workflows.lifecycle import AchievementLifecycle

AFTER_PUBLICITY = DEFAULT_POLICY.publicity_period + timedelta(minutes=1)
AT = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def systems() -> CannedSystems:
    return CannedSystems()


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, systems: CannedSystems, task_queue: str
) -> AsyncIterator[WorkerGroup]:
    async with systems.worker(time_skipping_env.client, task_queue) as group:
        yield group


def refusals(systems: CannedSystems) -> list[tuple[str, str]]:
    """(type, reason) of each refused event handed to the projection, in order."""
    return [(p["type"], p["reason"]) for p in systems.payloads("external_event_refused")]


def equity_only(today: date) -> Scenario:
    """Ready for the market with an equity investment only: evaluation sends it straight to
    incubation, where it waits for the company."""
    sc = scenarios.cooperative_development(today)
    modes = [TransformationMode.EQUITY_INVESTMENT]
    return dataclasses.replace(
        sc, disclosure=sc.disclosure.model_copy(update={"intended_modes": modes})
    )


async def to_incubation(handle: Handle, sc: Scenario) -> LifecycleState:
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    for review in sc.reviews():
        await handle.execute_update(AchievementLifecycle.submit_review, review)
    return await until(
        handle,
        lambda s: s.stage is Stage.INCUBATION and s.waiting is not None,
        what="incubation, waiting for the company",
    )


def company(event_id: str = "co-1") -> CompanyFounded:
    return CompanyFounded(
        event_id=event_id,
        company_name="Synthetic Accelerators Co",
        credit_code="91310000MA1FL8XQ3X",
        equity_share=Decimal("25.00"),
        valuation=Decimal("10000000.00"),
        founded_at=AT,
    )


def admission(event_id: str, incubator: str = "Zhangjiang Science Park") -> IncubatorAdmission:
    return IncubatorAdmission(event_id=event_id, incubator=incubator, admitted_at=AT)


def milestone(event_id: str) -> IncubationMilestone:
    return IncubationMilestone(
        event_id=event_id, kind="product", description="first product shipped", reached_at=AT
    )


async def test_exchange_events_not_applied_are_refused_with_their_reason(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: CannedSystems
) -> None:
    sc = scenarios.cooperative_development(await server_today(time_skipping_env))
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    [listing] = (await to_transaction(handle, sc)).listings
    ours = listing.listing_id
    stray_bid = Bid(
        event_id="bid-stray",
        exchange="sstec",
        listing_id="L-NOT-OURS",
        bidder="Acme",
        amount=Decimal("1000.00"),
        placed_at=AT,
    )
    await handle.signal(AchievementLifecycle.exchange_bid, stray_bid)
    await handle.signal(AchievementLifecycle.exchange_bid, stray_bid)  # redelivered: no-op
    foreign_bid = stray_bid.model_copy(
        update={"event_id": "bid-foreign", "exchange": "jstec", "listing_id": ours}
    )
    await handle.signal(AchievementLifecycle.exchange_bid, foreign_bid)
    await handle.signal(
        AchievementLifecycle.exchange_deal, deal("L-NOT-OURS", "sstec", 1, "deal-stray")
    )
    early_pay = payment(deal(ours, "sstec", 2), 1, "600000.00").model_copy(
        update={"event_id": "pay-early"}
    )
    await handle.signal(AchievementLifecycle.exchange_payment, early_pay)
    expiry = ListingExpired(event_id="exp-stray", exchange="sstec", listing_id="L-NOT-OURS")
    await handle.signal(AchievementLifecycle.listing_expired, expiry)

    await systems.recorded("external_event_refused", 5)
    expected = [
        ("bid", "listing L-NOT-OURS is not one of this achievement's"),
        ("bid", "the listing is on sstec, not jstec"),
        ("deal", "the deal is on no listing of this achievement"),
        ("payment", "no deal has been accepted"),
        ("listing_expired", "listing L-NOT-OURS is not one of this achievement's"),
    ]
    assert refusals(systems) == expected
    st = await until(handle, lambda s: len(s.refused) == 5, what="five refusals in the state")
    assert [(r.type, r.reason) for r in st.refused] == expected
    assert [r.source for r in st.refused] == [
        "exchange:sstec",
        "exchange:jstec",
        "exchange:sstec",
        "exchange:sstec",
        "exchange:sstec",
    ]
    [first, *_] = systems.events[-5:]
    assert first.payload["event"]["listing_id"] == "L-NOT-OURS"  # the event itself is kept
    assert st.deal is None and "bid_received" not in systems.types()

    # A second payment of an instalment already paid is refused; its redelivery is a no-op.
    await time_skipping_env.sleep(AFTER_PUBLICITY)
    won = deal(ours, "sstec", instalments=2, event_id="deal-won")
    await handle.signal(AchievementLifecycle.exchange_deal, won)
    await until(handle, lambda s: s.contract is not None, what="the contract")
    await handle.signal(AchievementLifecycle.exchange_payment, payment(won, 1, "600000.00"))
    twice = payment(won, 1, "600000.00").model_copy(update={"event_id": "pay-1-again"})
    for _ in range(2):
        await handle.signal(AchievementLifecycle.exchange_payment, twice)
    await systems.recorded("external_event_refused", 6)
    st = await until(handle, lambda s: len(s.payments) == 1 and len(s.refused) == 6)
    assert refusals(systems)[-1] == ("payment", "instalment 1 is already recorded")
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN
    assert len(systems.payloads("external_event_refused")) == 6


async def test_incubator_events_in_a_wrong_stage_are_refused(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: CannedSystems
) -> None:
    sc = scenarios.cooperative_development(await server_today(time_skipping_env))
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    await handle.signal(AchievementLifecycle.company_founded, company())
    await handle.signal(AchievementLifecycle.company_founded, company())  # redelivered
    await handle.signal(AchievementLifecycle.incubation_milestone, milestone("ms-1"))
    st = await until(handle, lambda s: len(s.refused) == 2, what="two refusals")
    reason = "incubator events count in incubation, not in evaluation"
    assert refusals(systems) == [("company_founded", reason), ("incubation_milestone", reason)]
    assert st.company is None and st.held_incubator_events == []
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN


async def test_incubator_events_before_the_company_are_held_then_applied(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: CannedSystems
) -> None:
    sc = equity_only(await server_today(time_skipping_env))
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await to_incubation(handle, sc)
    first = admission("adm-1")
    await handle.signal(AchievementLifecycle.incubator_admitted, first)
    await handle.signal(AchievementLifecycle.incubator_admitted, first)  # redelivered
    await handle.signal(AchievementLifecycle.incubation_milestone, milestone("ms-1"))
    await handle.signal(AchievementLifecycle.incubator_admitted, admission("adm-2", "Other Park"))
    exit = IncubationExit(event_id="exit-1", kind="graduated", exited_at=AT)
    await handle.signal(AchievementLifecycle.incubation_exit, exit)
    st = await until(handle, lambda s: len(s.held_incubator_events) == 4, what="four held")
    assert [e.event_id for e in st.held_incubator_events] == ["adm-1", "ms-1", "adm-2", "exit-1"]
    assert st.incubator is None and st.incubation_exit is None and st.stage is Stage.INCUBATION
    assert "incubator_admitted" not in systems.types()

    await handle.signal(AchievementLifecycle.company_founded, company())
    assert (await handle.result()).final_stage is Stage.COMPLETED  # the held exit ended it
    st = await state(handle)
    assert st.held_incubator_events == []
    assert st.incubator == first and st.incubation_exit == exit
    assert [m.event_id for m in st.incubation_milestones] == ["ms-1"]
    types = systems.types()
    assert (
        types.index("company_founded")
        < types.index("incubator_admitted")
        < types.index("incubation_milestone")
        < types.index("incubation_exited")
        < types.index("equity_registered")
    )
    # The second admission, a different event, is refused rather than dropped.
    assert refusals(systems) == [
        ("incubator_admitted", "the company is already admitted to Zhangjiang Science Park")
    ]


async def test_held_incubator_events_are_refused_when_incubation_ends_without_a_company(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: CannedSystems
) -> None:
    sc = equity_only(await server_today(time_skipping_env))
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await to_incubation(handle, sc)
    await handle.signal(AchievementLifecycle.incubator_admitted, admission("adm-1"))
    await until(handle, lambda s: len(s.held_incubator_events) == 1, what="the admission held")
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN
    st = await state(handle)
    assert st.held_incubator_events == [] and st.incubator is None
    [refused] = st.refused
    assert (refused.type, refused.event_id, refused.source) == (
        "incubator_admitted",
        "adm-1",
        "incubator",
    )
    assert refused.reason == "incubation ended without a company: withdrawn: test over"
    [payload] = systems.payloads("external_event_refused")
    assert payload["event"]["incubator"] == "Zhangjiang Science Park"


async def test_registry_notices_and_fund_reports_without_a_poc_are_recorded_as_refused(
    time_skipping_env: WorkflowEnvironment, worker: WorkerGroup, systems: CannedSystems
) -> None:
    sc = scenarios.cooperative_development(await server_today(time_skipping_env))
    handle = await start(time_skipping_env.client, worker.task_queue, sc, DEFAULT_POLICY)
    await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    notice = ExternalEvent(system="registry", type="registration_amended", event_id="reg-1")
    report = ExternalEvent(
        system="poc-fund",
        type="milestone_reported",
        event_id="poc-1",
        details={"milestone_id": "m1", "achieved": "true"},
    )
    for event in (notice, notice, report):  # the notice twice: a redelivery
        await handle.signal(AchievementLifecycle.external_event, event)
    st = await until(handle, lambda s: len(s.refused) == 2, what="two refusals")
    assert [(r.source, r.type, r.reason) for r in st.refused] == [
        (
            "registry",
            "registration_amended",
            "the lifecycle applies no registry event of type registration_amended",
        ),
        ("poc-fund", "milestone_reported", "no proof of concept is running (stage evaluation)"),
    ]
    assert systems.payloads("external_event_refused")[1]["event"] == {
        "milestone_id": "m1",
        "achieved": "true",
    }
    assert (await finish(handle)).final_stage is Stage.WITHDRAWN
