"""What operators read: Temporal UI links, what needs a person, and closed lifecycles past
retention, against the session's real gateway, PostgreSQL and Temporal dev server.

Rows that need a person are written through the real projection append
(ProjectionActivities.record_events, i.e. the SQL function), with views carrying
needs_attention_since / next_action as the lifecycle fills them.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from gateway_requests import disclosure_request
from helpers.eventually import assert_eventually
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from rich.console import Console
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from typer.testing import CliRunner, Result

from activities.projections import ProjectionActivities
from cli.main import app
from cli.reads import page_table
from core.http_server import bind_socket, serving
from core.policy_book import PolicyBook
from gateway.metrics import CACHE_SECONDS, GAUGES
from gateway.serve import token_verifier
from sandboxes.identity_directory import DEMO_PASSWORD
from schemas.events import EventType, LifecycleEvent
from schemas.read_models import AchievementPage
from schemas.views import AchievementView
from workers.worker import build_worker
from workflows.ids import workflow_id

if TYPE_CHECKING:
    from conftest import Stack

OFFICER, OTHER_OFFICER = "officer.syn-uni", "officer.syn-other"
EXPERT, REGULATOR = "expert-a", "regulator.shstc"  # expert-a sits on gateway_requests' PANEL
NOW = datetime.now(UTC)


class Operators:
    def __init__(
        self, stack: Stack, http: httpx.AsyncClient, client: Client, credentials: Path
    ) -> None:
        self.stack, self.http, self.client = stack, http, client
        self.credentials = credentials

    async def get(self, path: str, as_: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers=await self.stack.headers(as_))

    async def cli(self, *args: str, as_: str, columns: int = 200) -> Result:
        """`achievements ARGS` as a person logged in at the session's issuer (own credentials
        file), against the stack's gateway; CliRunner in a thread (the CLI is synchronous)."""
        env = {
            "COLUMNS": str(columns),
            "ACHIEVEMENTS_OIDC_ISSUER": str(self.stack.settings.oidc_issuer),
            "ACHIEVEMENTS_CREDENTIALS_FILE": str(self.credentials / f"{as_}.json"),
        }

        def invoke(argv: list[str], stdin: str | None = None) -> Result:
            return CliRunner().invoke(app, argv, input=stdin, env=env, catch_exceptions=False)

        if not (self.credentials / f"{as_}.json").exists():
            login = ["login", "--username", as_, "--password-stdin"]
            result = await asyncio.to_thread(invoke, login, DEMO_PASSWORD + "\n")
            assert result.exit_code == 0, result.output
        argv = [*args, "--gateway-url", self.stack.gateway_url]
        return await asyncio.to_thread(invoke, argv)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ops(
    dev_env: WorkflowEnvironment, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Operators]:
    """The stack's gateway, and a real worker on the queue it starts lifecycles on."""
    async with (
        build_worker(dev_env.client, stack.deps, stack.settings.task_queue, stack.settings),
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as http,
    ):
        credentials = tmp_path_factory.mktemp("credentials")
        yield Operators(stack, http, dev_env.client, credentials)


def view(aid: str, inst: str, stage: str, **fields: Any) -> AchievementView:
    return AchievementView(
        achievement_id=aid,
        workflow_id=workflow_id(aid),
        institution_code=inst,
        title=fields.pop("title", "Operator probe"),
        field="biomedicine",
        stage=stage,
        modes=[],
        funding_kinds=["self"],
        mandatory_listing_due=None,
        waiting_on=fields.pop("waiting_on", None),
        waiting_until=fields.pop("waiting_until", None),
        synthetic=True,
        updated_at=NOW,
        **fields,
    )


async def project(db: asyncpg.Pool, row: AchievementView) -> None:
    """One stage-entered event and the row, through the real projection append."""
    event = LifecycleEvent(
        event_id=str(uuid.uuid4()),
        achievement_id=row.achievement_id,
        workflow_id=row.workflow_id,
        institution_code=row.institution_code,
        type=EventType.STAGE_ENTERED,
        stage=row.stage,
        occurred_at=NOW,
        source="workflow",
        payload={"stage": row.stage},
    )
    activities = ProjectionActivities(db)
    assert await ActivityEnvironment().run(activities.record_events, [event], row) == 1


async def seed(db: asyncpg.Pool, inst: str) -> dict[str, AchievementView]:
    """An institution of its own: one row on time, one overdue, two that need a person."""
    tag = inst.split("-")[1]
    rows = {
        "calm": view(
            f"{tag}-CALM-0000000001", inst, "evaluation", waiting_on="3 expert reviews",
            waiting_until=NOW + timedelta(days=5),
        ),
        "late": view(
            f"{tag}-LATE-0000000002", inst, "transaction", waiting_on="the exchange's listing",
            waiting_until=NOW - timedelta(hours=3),
        ),
        "person": view(
            f"{tag}-PERSON-000000003", inst, "evaluation",
            title="<script>alert(1)</script> & <b>bold</b>",
            waiting_on="an operator's routing decision",
            needs_attention_since=NOW - timedelta(days=2),
            attention_reason="escalated",
            next_action="achievements decide ID --route … / POST /achievements/{id}/decision",
        ),
        "older": view(
            f"{tag}-OLDER-0000000004", inst, "proof_of_concept",
            needs_attention_since=NOW - timedelta(days=9),
            attention_reason="deadline_passed",
            next_action="the fund's go/no-go: POST /achievements/{id}/poc/decision",
        ),
    }  # fmt: skip
    for row in rows.values():
        await project(db, row)
    return rows


def unique_institution() -> str:
    return f"OV-{uuid.uuid4().hex[:6].upper()}"


# ---------------------------------------------------------------------------- links, filters


async def test_state_and_list_link_to_the_temporal_ui(ops: Operators) -> None:
    aid = f"OV-{uuid.uuid4().hex[:10].upper()}"
    created = await ops.http.post(
        "/achievements", json=disclosure_request(aid), headers=await ops.stack.headers(OFFICER)
    )
    assert created.status_code == 201, created.text
    expected = (
        f"{ops.stack.settings.temporal_ui_url}/namespaces/{ops.client.namespace}"
        f"/workflows/{workflow_id(aid)}"
    )
    state = await ops.get(f"/achievements/{aid}", OFFICER)
    assert state.status_code == 200, state.text
    assert state.json()["ui_url"] == expected and state.json()["source"] == "workflow"

    async def listed() -> dict[str, Any]:
        # From just before the id (keyset order), however many rows the session holds.
        page = (await ops.get("/achievements", OFFICER, cursor=aid[:-1], limit=50)).json()
        row: dict[str, Any] | None = {i["achievement_id"]: i for i in page["items"]}.get(aid)
        assert row is not None, "not projected yet"
        return row

    row = await assert_eventually(listed, what="the new lifecycle in the list")
    assert row["ui_url"] == expected
    status = await ops.cli("status", aid, as_=OFFICER)
    assert status.exit_code == 0 and expected in status.stdout, status.output
    listing = await ops.cli("list", "--links", "--cursor", aid[:-1], as_=OFFICER)
    assert listing.exit_code == 0 and expected in listing.stdout, listing.output
    await ops.http.post(
        f"/achievements/{aid}/withdraw",
        json={"reason": "test over"},
        headers=await ops.stack.headers(OFFICER),
    )


async def test_needs_attention_filter_is_the_rows_a_person_must_act_on(
    ops: Operators, db: asyncpg.Pool
) -> None:
    inst = unique_institution()
    rows = await seed(db, inst)
    response = await ops.get(
        "/achievements", REGULATOR, institution=inst, needs_attention="true", limit=500
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {i["achievement_id"] for i in items} == {
        rows["person"].achievement_id,
        rows["older"].achievement_id,
    }
    person = next(i for i in items if i["achievement_id"] == rows["person"].achievement_id)
    assert person["attention_reason"] == "escalated" and person["next_action"].startswith(
        "achievements decide"
    )
    calm = await ops.get("/achievements", REGULATOR, institution=inst, needs_attention="false")
    assert {i["achievement_id"] for i in calm.json()["items"]} == {
        rows["calm"].achievement_id,
        rows["late"].achievement_id,
    }
    wrong = await ops.get("/achievements", REGULATOR, needs_attention="perhaps")
    assert wrong.status_code == 422 and "needs_attention" in wrong.text

    # The command line: the same rows, ids whole at 80 columns; a word when nothing matched.
    shown = await ops.cli(
        "list", "--institution", inst, "--needs-attention", as_=REGULATOR, columns=80
    )
    assert shown.exit_code == 0, shown.output
    assert rows["person"].achievement_id in shown.stdout
    assert rows["older"].achievement_id in shown.stdout
    assert rows["late"].achievement_id not in shown.stdout
    nothing = await ops.cli("list", "--institution", unique_institution(), as_=REGULATOR)
    assert nothing.exit_code == 0 and "no achievement matched" in nothing.stdout, nothing.output
    events = await ops.cli("events", "--limit", "2", as_=REGULATOR)
    assert events.exit_code == 0 and len(events.stdout.splitlines()) == 2, events.output


def test_the_list_keeps_ids_whole_and_shows_what_it_waits_for() -> None:
    long_id = "SYN-UNI-2026-QUANTUM-SENSOR-000123"
    row = view(
        long_id, "SYN-UNI", "transaction", waiting_on="the exchange's listing",
        waiting_until=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        needs_attention_since=datetime(2026, 11, 30, tzinfo=UTC), attention_reason="overdue",
    )  # fmt: skip
    page = AchievementPage.model_validate(
        {"items": [{**row.model_dump(), "ui_url": "http://ui/x"}], "next_cursor": None}
    )
    out = io.StringIO()
    Console(file=out, width=80).print(page_table(page))
    text = out.getvalue()
    assert long_id in text  # whole, on one line, at 80 columns
    assert "waiting for" in text and "the exchange's" in text
    assert "2026-12-01" in text and "09:30" in text and "(overdue)" in text
    assert "institution" not in text  # one institution: no column for it


# ---------------------------------------------------------------------------- past retention


async def test_a_closed_lifecycle_past_retention_is_read_from_the_archive(ops: Operators) -> None:
    aid = f"OV-{uuid.uuid4().hex[:10].upper()}"
    created = await ops.http.post(
        "/achievements", json=disclosure_request(aid), headers=await ops.stack.headers(OFFICER)
    )
    assert created.status_code == 201, created.text
    withdrawn = await ops.http.post(
        f"/achievements/{aid}/withdraw",
        json={"reason": "the team left"},
        headers=await ops.stack.headers(OFFICER),
    )
    assert withdrawn.status_code == 200, withdrawn.text
    handle = ops.client.get_workflow_handle(workflow_id(aid))
    await handle.result()

    async def final_row_projected() -> None:
        page = (await ops.get("/achievements", OFFICER, cursor=aid[:-1], limit=50)).json()
        rows = {i["achievement_id"]: i["stage"] for i in page["items"]}
        assert rows.get(aid) == "withdrawn", rows.get(aid)

    await assert_eventually(final_row_projected, what="the final row in PostgreSQL")

    # What the namespace's retention does once it has passed: the execution is deleted.
    await ops.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=ops.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id(aid)),
        )
    )

    async def deleted() -> None:
        try:
            await handle.describe()
        except RPCError as exc:
            assert exc.status == RPCStatusCode.NOT_FOUND
            return
        raise AssertionError("still there")

    # The server deletes asynchronously; generous under a loaded machine.
    await assert_eventually(deleted, within=60, interval=0.2, what="the execution deleted")

    for reader in (OFFICER, REGULATOR):
        response = await ops.get(f"/achievements/{aid}", reader)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "archive" and body["closed"] is True
        assert body["achievement"]["stage"] == "withdrawn"
        types = [e["type"] for e in body["timeline"]]
        assert "disclosed" in types and types[-1] == "withdrawn", types
        seqs = [e["seq"] for e in body["timeline"]]
        assert seqs == sorted(seqs)
    # Still nobody else's: another institution's officer and the panel's expert get a 404.
    for outsider in (OTHER_OFFICER, EXPERT):
        response = await ops.get(f"/achievements/{aid}", outsider)
        assert response.status_code == 404, (outsider, response.text)
    unknown = await ops.get(f"/achievements/OV-NEVER-{uuid.uuid4().hex[:8].upper()}", OFFICER)
    assert unknown.status_code == 404
    status = await ops.cli("status", aid, as_=OFFICER)
    assert status.exit_code == 0, status.output
    assert f"{aid}  [withdrawn, closed]" in status.stdout and "past its retention" in status.stdout
    assert "withdrawn" in status.stdout.split("recorded events", 1)[1]


# ---------------------------------------------------------------------------- the overview


async def test_overview_counts_stages_and_lists_what_needs_attention_oldest_first(
    ops: Operators, db: asyncpg.Pool
) -> None:
    inst = unique_institution()
    rows = await seed(db, inst)
    response = await ops.get("/overview", REGULATOR, institution=inst, format="json")
    assert response.status_code == 200, response.text
    body = response.json()
    stages = {
        s["stage"]: (s["lifecycles"], s["overdue"], s["needs_person"]) for s in body["stages"]
    }
    assert stages == {
        "evaluation": (2, 0, 1),
        "proof_of_concept": (1, 0, 1),
        "transaction": (1, 1, 0),
    }
    assert [s["stage"] for s in body["stages"]] == ["evaluation", "proof_of_concept", "transaction"]
    order = [r["achievement_id"] for r in body["attention"]]
    assert order == [rows[k].achievement_id for k in ("older", "person", "late")]
    late = body["attention"][2]
    assert late["overdue"] is True and late["waiting_on"] == "the exchange's listing"
    for row in body["attention"]:
        assert row["ui_url"].endswith(f"/workflows/{workflow_id(row['achievement_id'])}")
    # The same rows as `list --needs-attention` (and the UI's NeedsAttentionSince IS NOT NULL).
    listed = await ops.get(
        "/achievements", REGULATOR, institution=inst, needs_attention="true", limit=500
    )
    needing = {r["achievement_id"] for r in body["attention"] if r["needs_attention_since"]}
    assert needing == {i["achievement_id"] for i in listed.json()["items"]}


async def test_overview_is_scoped_to_the_callers_institution(
    ops: Operators, db: asyncpg.Pool
) -> None:
    inst = unique_institution()
    rows = await seed(db, inst)
    mine = await ops.get("/overview", OFFICER, format="json")
    assert mine.status_code == 200, mine.text
    seen = {r["achievement_id"] for r in mine.json()["attention"]}
    assert not seen & {r.achievement_id for r in rows.values()}
    assert mine.json()["institution"] == "SYN-UNI"
    theirs = await ops.get("/overview", OFFICER, institution=inst, format="json")
    assert theirs.status_code == 200 and theirs.json()["stages"] == []
    assert theirs.json()["attention"] == []
    expert = await ops.get("/overview", EXPERT)
    assert expert.status_code == 403 and "requires the role" in expert.json()["detail"]
    bad = await ops.get("/overview", REGULATOR, format="pdf")
    assert bad.status_code == 422 and "format" in bad.text


async def test_overview_page_in_headless_chromium_escapes_titles(
    ops: Operators, db: asyncpg.Pool, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "Chromium is not installed: apt-get install -y chromium"
        if os.environ.get("ACHIEVEMENTS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    inst = unique_institution()
    rows = await seed(db, inst)
    response = await ops.get("/overview", REGULATOR, institution=inst)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = tmp_path / "overview.html"
    page.write_text(response.text, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--dump-dom",
        page.as_uri(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    dom = out.decode()
    # The DOM Chromium built: the hostile title is text, never an element.
    assert "<script" not in dom and "<b>bold</b>" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in dom
    shown = re.findall(r'data-achievement="([^"]+)"', dom)
    assert shown == [rows[k].achievement_id for k in ("older", "person", "late")]
    ui = ops.stack.settings.temporal_ui_url
    assert f'href="{ui}/namespaces/{ops.client.namespace}/workflows/' in dom
    assert "achievements decide ID --route" in dom and "overdue since" in dom
    assert re.search(r"<td>transaction</td><td class=\"n\">1</td><td class=\"n\">1</td>", dom)


# ---------------------------------------------------------------------------- metrics

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "achievement-lifecycles.json"


async def test_metrics_export_the_overview_figures_and_the_dashboard_queries_them(
    ops: Operators, db: asyncpg.Pool
) -> None:
    inst = unique_institution()
    await seed(db, inst)
    exported: dict[str, dict[tuple[str, str], float]] = {}

    async def scraped() -> None:
        response = await ops.http.get("/metrics")  # a scraper: no person's token
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        exported.clear()
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                values = exported.setdefault(s.name, {})
                values[(s.labels["institution"], s.labels["stage"])] = s.value
        assert (inst, "evaluation") in exported["achievements_lifecycles"], "cached figures"

    # Within the cache's life and a little more: a fresh scrape reads PostgreSQL again.
    await assert_eventually(scraped, within=CACHE_SECONDS + 10, interval=1.0, what="a scrape")
    assert exported["achievements_lifecycles"][(inst, "evaluation")] == 2
    assert exported["achievements_lifecycles_overdue"][(inst, "transaction")] == 1
    assert exported["achievements_lifecycles_needing_person"][(inst, "proof_of_concept")] == 1
    assert exported["achievements_lifecycles_needing_person"][(inst, "transaction")] == 0

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(achievements_[a-z_]+)\b", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= set(exported), queried - set(exported)
    assert set(GAUGES) == set(exported)


async def test_metrics_with_a_scrape_token_refuse_scrapers_without_it(
    dev_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool
) -> None:
    """A second gateway over real HTTP, configured with ACHIEVEMENTS_METRICS_TOKEN."""
    from gateway.app import create_gateway_app

    token = "scrape-token-" + uuid.uuid4().hex
    settings = stack.settings.model_copy(update={"metrics_token": SecretStr(token)})
    verifier = token_verifier(settings)
    gateway = create_gateway_app(dev_env.client, settings, PolicyBook.load(), verifier, pool=db)
    sock = bind_socket("127.0.0.1")
    async with (
        serving(gateway, sock),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as http,
    ):
        for sent in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            refused = await http.get("/metrics", headers=sent)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            assert token not in refused.text
        scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200 and "achievements_lifecycles" in scraped.text
    await verifier.close()


async def test_metrics_outside_dev_need_a_scrape_token(
    dev_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool
) -> None:
    """In production, no token configured means no anonymous per-institution counts."""
    from gateway.app import create_gateway_app

    settings = stack.settings.model_copy(update={"environment": "production"})
    verifier = token_verifier(settings)
    gateway = create_gateway_app(dev_env.client, settings, PolicyBook.load(), verifier, pool=db)
    sock = bind_socket("127.0.0.1")
    async with (
        serving(gateway, sock),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as http,
    ):
        refused = await http.get("/metrics")
        assert refused.status_code == 403, refused.text
        assert "ACHIEVEMENTS_METRICS_TOKEN" in refused.text
        assert "achievements_lifecycles" not in refused.text
    await verifier.close()
