"""Projections on a real embedded PostgreSQL: idempotent appends, list views, the event feed."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from report_data import DataSet, generate, record
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import queries
from activities.projections import ProjectionActivities
from cli.reads import tail_events
from core.policy_book import PolicyBook
from core.settings import Settings
from gateway.app import create_gateway_app
from gateway.serve import token_verifier
from schemas.events import EventType, LifecycleEvent
from schemas.read_models import AchievementFilter
from schemas.views import AchievementView
from workflows.ids import workflow_id

if TYPE_CHECKING:
    from conftest import Stack

# The generated institutions are nobody's own: the regulator reads every institution.
READER = "regulator.shstc"


def _event(aid: str, inst: str, n: int = 0, event_id: str | None = None) -> LifecycleEvent:
    return LifecycleEvent(
        event_id=event_id or str(uuid.uuid4()),
        achievement_id=aid,
        workflow_id=workflow_id(aid),
        institution_code=inst,
        type=EventType.STAGE_ENTERED,
        stage="evaluation",
        occurred_at=datetime(2024, 3, 1, tzinfo=UTC),
        source="workflow",
        payload={"stage": "evaluation", "note": f"step {n}"},
    )


def _view(aid: str, inst: str, stage: str = "evaluation") -> AchievementView:
    return AchievementView(
        achievement_id=aid,
        workflow_id=workflow_id(aid),
        institution_code=inst,
        title="Concurrency probe",
        field="biomedicine",
        stage=stage,
        modes=["licence"],
        funding_kinds=["self"],
        mandatory_listing_due=None,
        waiting_on=None,
        waiting_until=None,
        synthetic=True,
        updated_at=datetime(2024, 3, 1, tzinfo=UTC),
    )


async def test_concurrent_writers_and_retries_append_once(db: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    aid, inst = f"P{tag}-1", f"P{tag}"
    event, view = _event(aid, inst), _view(aid, inst)
    activities = ProjectionActivities(db)
    # Eight workers deliver the same event at once (e.g. an activity retried after a timeout
    # whose first attempt was still running): exactly one append wins.
    results = await asyncio.gather(
        *(ActivityEnvironment().run(activities.record_event, event, view) for _ in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    # A later retry of the same event changes nothing either.
    assert await ActivityEnvironment().run(activities.record_event, event, view) is False
    rows = await db.fetch("SELECT seq FROM lifecycle_events WHERE event_id = $1", event.event_id)
    assert len(rows) == 1
    row = await db.fetchrow("SELECT * FROM achievements WHERE achievement_id = $1", aid)
    assert row is not None and row["last_event_seq"] == rows[0]["seq"]


async def test_a_retried_batch_appends_nothing_twice_and_keeps_its_order(
    db: asyncpg.Pool,
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    aid, inst = f"B{tag}-1", f"B{tag}"
    events = [_event(aid, inst, n) for n in range(4)]
    activities = ProjectionActivities(db)
    env = ActivityEnvironment()
    # The first attempt recorded two events, then the worker died; the retry has all four.
    assert await env.run(activities.record_events, events[:2], _view(aid, inst)) == 2
    assert await env.run(activities.record_events, events, _view(aid, inst, "transaction")) == 2
    assert await env.run(activities.record_events, events, _view(aid, inst, "transaction")) == 0
    rows = await db.fetch(
        "SELECT event_id, seq FROM lifecycle_events WHERE achievement_id = $1 ORDER BY seq", aid
    )
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    row = await db.fetchrow("SELECT * FROM achievements WHERE achievement_id = $1", aid)
    assert row is not None
    assert row["stage"] == "transaction" and row["last_event_seq"] == rows[-1]["seq"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dataset(db: asyncpg.Pool) -> AsyncIterator[DataSet]:
    ds = generate(years=[2022, 2023], institutions=2, per_year=10, seed=11)
    await record(db, ds.events, ds)
    yield ds


async def _all_pages(db: asyncpg.Pool, where: AchievementFilter, now: datetime) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await queries.list_achievements(db, where, now, limit=3, cursor=cursor)
        ids += [r.achievement_id for r in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


FILTERS = ["institution", "stage", "field", "mode", "overdue", "not_overdue", "mandatory_due"]


async def test_an_append_notifies_listeners_once_at_commit(
    db: asyncpg.Pool, postgres_dsn: str
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    aid, inst = f"N{tag}-1", f"N{tag}"
    events = [_event(aid, inst, n) for n in range(3)]
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_notify(conn: Any, pid: int, channel: str, payload: object) -> None:
        body = json.loads(str(payload))
        if body["workflow_id"] == workflow_id(aid):  # other tests append on the same database
            heard.put_nowait(body)

    listener = await asyncpg.connect(postgres_dsn)
    try:
        await listener.add_listener("lifecycle_events", on_notify)
        activities = ProjectionActivities(db)
        env = ActivityEnvironment()
        assert await env.run(activities.record_events, events[:2], _view(aid, inst)) == 2
        first = await asyncio.wait_for(heard.get(), 30)
        # A complete retry appends nothing and says nothing; the next new event is heard next.
        assert await env.run(activities.record_events, events[:2], _view(aid, inst)) == 0
        view = _view(aid, inst, "transaction")
        assert await env.run(activities.record_events, events, view) == 1
        second = await asyncio.wait_for(heard.get(), 30)
    finally:
        await listener.close()
    seqs = await db.fetch(
        "SELECT seq FROM lifecycle_events WHERE achievement_id = $1 ORDER BY seq", aid
    )
    assert first == {
        "workflow_id": workflow_id(aid),
        "stage": "evaluation",
        "last_seq": seqs[1]["seq"],
        "types": ["stage_entered", "stage_entered"],
    }
    assert second["stage"] == "transaction" and second["types"] == ["stage_entered"]
    assert second["last_seq"] == seqs[2]["seq"]
    assert heard.empty()


@pytest.mark.parametrize("name", FILTERS)
async def test_list_filters_match_the_generated_data(
    db: asyncpg.Pool, dataset: DataSet, name: str
) -> None:
    now = datetime.now(UTC)
    cut = date(2025, 7, 1)
    field = next(iter(dataset.views.values())).field
    cases: dict[str, tuple[dict[str, Any], Callable[[AchievementView], bool]]] = {
        "institution": ({}, lambda v: True),
        "stage": ({"stage": "completed"}, lambda v: v.stage == "completed"),
        "field": ({"field": field}, lambda v: v.field == field),
        "mode": ({"mode": "licence"}, lambda v: "licence" in v.modes),
        "overdue": (
            {"overdue": True},
            lambda v: v.waiting_until is not None and v.waiting_until < now,
        ),
        "not_overdue": (
            {"overdue": False},
            lambda v: v.waiting_until is None or v.waiting_until >= now,
        ),
        "mandatory_due": (
            {"mandatory_due_before": cut},
            lambda v: v.mandatory_listing_due is not None and v.mandatory_listing_due < cut,
        ),
    }
    extra, keep = cases[name]
    everything = list(dataset.views.values())
    if name != "institution":
        # The data set must exercise the filter both ways, or the test proves nothing.
        assert 0 < sum(1 for v in everything if keep(v)) < len(everything)
    for inst in dataset.institutions:
        where = AchievementFilter(institution=inst, **extra)
        expected = sorted(
            v.achievement_id for v in everything if v.institution_code == inst and keep(v)
        )
        # Paginated three at a time: keyset pages neither skip nor repeat.
        assert await _all_pages(db, where, now) == expected


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway_app(
    db: asyncpg.Pool, dev_env: WorkflowEnvironment, stack: Stack
) -> AsyncIterator[httpx.ASGITransport]:
    """A gateway of its own (in process), trusting the session's real local issuer."""
    settings = Settings(metrics_port=0, oidc_issuer=stack.settings.oidc_issuer)
    verifier = token_verifier(settings)
    app = create_gateway_app(dev_env.client, settings, PolicyBook.load(), verifier, pool=db)
    yield httpx.ASGITransport(app=app)
    await verifier.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    gateway_app: httpx.ASGITransport, stack: Stack
) -> AsyncIterator[httpx.AsyncClient]:
    """The regulator's client: every request carries their bearer token."""
    async with httpx.AsyncClient(
        transport=gateway_app, base_url="http://gateway", headers=await stack.headers(READER)
    ) as http:
        yield http


async def test_gateway_list_view_paginates_with_filters(
    gateway: httpx.AsyncClient, dataset: DataSet
) -> None:
    inst = dataset.institutions[1]
    expected = sorted(
        v.achievement_id
        for v in dataset.views.values()
        if v.institution_code == inst and "licence" in v.modes
    )
    assert expected
    seen: list[str] = []
    params: dict[str, str | int] = {"institution": inst, "mode": "licence", "limit": 2}
    while True:
        response = await gateway.get("/achievements", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["achievement_id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == expected


async def test_gateway_list_view_names_bad_filters(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get(
        "/achievements", params={"stage": "limbo", "limit": 0, "mandatory_due_before": "soon"}
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["detail"]}
    assert {"query.stage", "query.limit", "query.mandatory_due_before"} <= fields


async def test_gateway_without_a_pool_answers_503(
    dev_env: WorkflowEnvironment, stack: Stack
) -> None:
    settings = Settings(metrics_port=0, oidc_issuer=stack.settings.oidc_issuer)
    verifier = token_verifier(settings)
    app = create_gateway_app(dev_env.client, settings, PolicyBook.load(), verifier)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            for path in ("/achievements", "/events"):
                # Authentication first: without a token nothing is said about the database.
                response = await http.get(path)
                assert response.status_code == 401, response.text
                response = await http.get(path, headers=await stack.headers(READER))
                assert response.status_code == 503
                assert response.json()["detail"] == "list views need ACHIEVEMENTS_DATABASE_URL"
    finally:
        await verifier.close()


async def test_gateway_reads_are_scoped_to_the_callers_institution(
    gateway_app: httpx.ASGITransport, stack: Stack, dataset: DataSet
) -> None:
    """An officer of another institution finds none of the data set's rows, the regulator all."""
    inst = dataset.institutions[0]
    async with httpx.AsyncClient(transport=gateway_app, base_url="http://gateway") as http:
        params: dict[str, str | int] = {"institution": inst, "limit": 100}
        everyone = await http.get(
            "/achievements", params=params, headers=await stack.headers(READER)
        )
        assert everyone.status_code == 200, everyone.text
        assert {i["achievement_id"] for i in everyone.json()["items"]} == {
            v.achievement_id for v in dataset.views.values() if v.institution_code == inst
        }
        officer = await stack.headers("officer.syn-other")
        response = await http.get("/achievements", params={"limit": 500}, headers=officer)
        assert response.status_code == 200, response.text
        assert all(i["institution_code"] == "SYN-OTHER" for i in response.json()["items"])
        response = await http.get("/events", params={"limit": 1000}, headers=officer)
        assert response.status_code == 200, response.text
        assert all(e["institution_code"] == "SYN-OTHER" for e in response.json()["events"])


async def test_gateway_list_filtered_by_another_institution_is_an_empty_page(
    gateway_app: httpx.ASGITransport, stack: Stack, dataset: DataSet
) -> None:
    """Another institution's rows do not exist for an officer: an empty page, not 403 or 500."""
    async with httpx.AsyncClient(transport=gateway_app, base_url="http://gateway") as http:
        response = await http.get(
            "/achievements",
            params={"institution": dataset.institutions[0]},
            headers=await stack.headers("officer.syn-other"),
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


async def test_feed_is_ordered_and_resumable_under_concurrent_writers(
    db: asyncpg.Pool, gateway: httpx.AsyncClient
) -> None:
    start = await db.fetchval("SELECT coalesce(max(seq), 0) FROM lifecycle_events")
    tag = uuid.uuid4().hex[:6].upper()
    activities = ProjectionActivities(db)
    written: list[str] = []
    writing = True

    async def writer(w: int) -> None:
        env = ActivityEnvironment()
        aid, inst = f"F{tag}-{w}", f"F{tag}"
        for n in range(40):
            event = _event(aid, inst, n)
            await env.run(activities.record_event, event, _view(aid, inst))
            written.append(event.event_id)

    async def reader() -> list[tuple[int, str]]:
        """Polls in small pages while the writers run: what a downstream system sees."""
        got: list[tuple[int, str]] = []
        after = start
        while True:
            done = not writing
            page = await queries.events_after(db, after=after, limit=7)
            got += [(e.seq, e.event_id) for e in page.events]
            after = page.next_after
            if done and not page.events:
                return got
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(4)))
    writing = False
    got = await reading
    mine = [(seq, eid) for seq, eid in got if eid in set(written)]
    seqs = [seq for seq, _ in got]
    assert seqs == sorted(set(seqs)), "the feed went backwards or repeated an event"
    # Nothing missed: every event written while the reader was polling was delivered once.
    assert sorted(eid for _, eid in mine) == sorted(written)

    # Resume through the gateway from the middle of what was read: same events, same order.
    middle = mine[len(mine) // 2][0]
    resumed: list[int] = []
    after = middle
    while True:
        response = await gateway.get("/events", params={"after": after, "limit": 13})
        assert response.status_code == 200
        body = response.json()
        resumed += [e["seq"] for e in body["events"] if e["event_id"] in set(written)]
        if not body["events"]:
            break
        after = body["next_after"]
    assert resumed == [seq for seq, _ in mine if seq > middle]

    # `achievements events --after N` prints the same feed as JSON lines and its cursor.
    out = io.StringIO()
    cursor = await tail_events(gateway, after=middle, follow=False, page_size=50, out=out)
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["seq"] for e in printed if e["event_id"] in set(written)] == resumed
    assert cursor == printed[-1]["seq"]

    # `--limit 3` prints three events and stops there, whatever the page size.
    out = io.StringIO()
    cursor = await tail_events(gateway, after=middle, follow=False, limit=3, page_size=2, out=out)
    three = [json.loads(line)["seq"] for line in out.getvalue().splitlines()]
    assert three == [e["seq"] for e in printed[:3]] and cursor == three[-1]
