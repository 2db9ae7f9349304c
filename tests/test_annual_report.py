"""The annual report: figures against independent sums, formats, Chromium, workflow, schedule."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest_asyncio
from conftest import Stack
from report_data import DataSet, Ledger, business_at, generate, record, sql_figures
from temporalio.client import ScheduleActionExecutionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from activities.report_render import (
    to_csv,
    to_html,
    to_json,
)
from activities.reports import build_institution_report, build_reports
from activities.store import _migrations, migrate
from schemas.events import EventType
from schemas.report import (
    AnnualReportInput,
    CountAmount,
    InstitutionAnnualReport,
    books_close,
    previous_year,
    report_zone,
)
from workers.schedules import annual_report_schedule, ensure_annual_report_schedule
from workers.worker import build_worker
from workflows.annual_report import AnnualReport

THIS_YEAR = datetime.now(UTC).year
YEARS = [THIS_YEAR - 3, THIS_YEAR - 2, THIS_YEAR - 1]
CENT = Decimal("0.01")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dataset(db: asyncpg.Pool) -> AsyncIterator[DataSet]:
    ds = generate(years=YEARS, institutions=3, per_year=9, seed=2024)
    await record(db, ds.events, ds)
    yield ds


def _d(value: str) -> Decimal:
    return Decimal(value)


def _expected(ds: DataSet, inst: str, year: int) -> dict[str, object]:
    """The figures computed in Python from the generated events, not from SQL."""
    payments = ds.of(inst, year, EventType.PAYMENT_RECEIVED)
    contracts = ds.of(inst, year, EventType.CONTRACT_REGISTERED)
    equity = ds.of(inst, year, EventType.EQUITY_REGISTERED)
    by_type: dict[str, tuple[int, Decimal]] = {}
    for e in contracts:
        n, amount = by_type.get(e.payload["contract_type"], (0, Decimal(0)))
        by_type[e.payload["contract_type"]] = (n + 1, amount + _d(e.payload["amount"]))
    months = [Decimal(0)] * 12
    for e in payments:
        months[business_at(e).month - 1] += _d(e.payload["amount"])
    dist = {
        k: sum((_d(e.payload["distribution"][k]) for e in payments), Decimal(0))
        for k in ("net_income", "team_reward", "tto_fund", "institution")
    }
    dist["team_owner_income"] = sum(
        (_d(e.payload["distribution"].get("team_owner_income", "0")) for e in payments),
        Decimal(0),
    )
    disclosed = ds.of(inst, year, EventType.DISCLOSED)
    views = [ds.views[e.achievement_id] for e in disclosed]
    return {
        "cash": sum((_d(e.payload["amount"]) for e in payments), Decimal(0)),
        "costs": sum((_d(e.payload["costs"]) for e in payments), Decimal(0)),
        "dist": dist,
        "months": months,
        "by_type": by_type,
        "equity_count": len(equity),
        "equity_held": sum(
            (
                # The institution's part: the team's equity (item 3) is not the institution's.
                (
                    _d(e.payload["valuation"])
                    * (_d(e.payload["equity_share"]) - _d(e.payload.get("team_equity_share", "0")))
                    / 100
                ).quantize(CENT, rounding=ROUND_HALF_UP)
                for e in equity
            ),
            Decimal(0),
        ),
        "state_owned": sum(1 for e in equity if e.payload["state_owned_equity"]),
        "companies": len(ds.of(inst, year, EventType.COMPANY_FOUNDED)),
        "teams": len(
            {e.achievement_id for e in payments if _d(e.payload["distribution"]["team_reward"])}
        ),
        "disclosed": len(disclosed),
        "by_field": Counter(v.field for v in views),
        "by_funding": Counter(k for v in views for k in v.funding_kinds),
        "by_ownership": Counter(e.payload.get("ownership", "unknown") for e in disclosed),
        "events": len(ds.of(inst, year)),
        "ip_kinds": Counter(
            k
            for e in disclosed
            for k in (e.payload["ip_kinds"] if "ip_kinds" in e.payload else ["unrecorded"])
        ),
        "tax": (
            sum(1 for e in contracts if e.payload["tax_preference_eligible"]),
            sum(
                (
                    _d(e.payload["amount"])
                    for e in contracts
                    if e.payload["tax_preference_eligible"]
                ),
                Decimal(0),
            ),
        ),
        "poc": (
            len(funded := ds.of(inst, year, EventType.POC_FUNDED)),
            sum((_d(e.payload["granted_amount"]) for e in funded), Decimal(0)),
        ),
        "mandatory": (
            len(ds.of(inst, year, EventType.MANDATORY_LISTING_TRIGGERED)),
            len(ds.of(inst, year, EventType.MANDATORY_LISTING_EXEMPTED)),
        ),
    }


def _expected_corrections(ds: DataSet, inst: str, year: int) -> list[dict[str, object]]:
    """Each earlier year's late events in the year's report, summed in Python."""
    out: list[dict[str, object]] = []
    for dated, events in sorted(ds.late(inst, year).items()):
        payments = [e for e in events if e.type is EventType.PAYMENT_RECEIVED]
        out.append(
            {
                "year": dated,
                "events": len(events),
                "payments": len(payments),
                "cash_received": sum((_d(e.payload["amount"]) for e in payments), Decimal(0)),
                "costs": sum((_d(e.payload["costs"]) for e in payments), Decimal(0)),
                "team_reward": sum(
                    (_d(e.payload["distribution"]["team_reward"]) for e in payments), Decimal(0)
                ),
            }
        )
    return out


async def test_report_figures_match_independent_sums(db: asyncpg.Pool, dataset: DataSet) -> None:
    checked_cash, checked_late = Decimal(0), 0
    added: Counter[str] = Counter()
    for inst in dataset.institutions:
        for year in YEARS:
            r = await build_institution_report(db, inst, year, datetime.now(UTC))
            x = _expected(dataset, inst, year)
            assert r.events_in_year == x["events"]
            assert r.income.cash_received == x["cash"]
            assert r.income.costs == x["costs"]
            dist = x["dist"]
            assert isinstance(dist, dict)
            assert r.income.net_income == dist["net_income"]
            assert r.income.team_reward == r.rewards.rewards_paid == dist["team_reward"]
            assert r.income.tto_fund == dist["tto_fund"]
            assert r.income.institution == dist["institution"]
            assert r.income.by_month == x["months"]
            # The parts add up to the cent: cash = costs + brokers' fees + net;
            # net = reward + fund + institution.
            assert r.income.cash_received == (
                r.income.costs + r.income.service_fees + r.income.net_income
            )
            assert r.income.team_owner_income == dist["team_owner_income"]
            assert r.income.net_income == (
                r.income.team_owner_income
                + r.income.team_reward
                + r.income.tto_fund
                + r.income.institution
            )
            assert sum(r.income.by_month, Decimal(0)) == r.income.cash_received
            by_type = x["by_type"]
            assert isinstance(by_type, dict)
            for kind, part in r.contracts.by_type.items():
                assert (part.count, part.amount) == by_type.get(kind, (0, Decimal(0)))
            assert r.deals.transfers == r.contracts.by_type["transfer"]
            assert r.deals.licences == r.contracts.by_type["licence"]
            assert r.deals.equity_investments.count == x["equity_count"]
            assert r.deals.equity_investments.amount == r.companies.equity_held
            assert r.companies.equity_held == x["equity_held"]
            assert r.companies.state_owned_equity == x["state_owned"]
            assert r.companies.companies_created == x["companies"]
            assert r.rewards.teams_rewarded == x["teams"]
            # The lifecycle's disclosed event carries no inventors: unknown, never a guess.
            assert r.rewards.people_rewarded is None or r.rewards.teams_rewarded == 0
            assert r.achievements.disclosed == x["disclosed"]
            assert r.achievements.by_field == dict(x["by_field"])  # type: ignore[call-overload]
            assert r.achievements.by_funding_kind == dict(x["by_funding"])  # type: ignore[call-overload]
            assert r.achievements.by_ownership == dict(x["by_ownership"])  # type: ignore[call-overload]
            assert r.funnel["disclosure"] == x["disclosed"]
            # The figures added for filing: in Python from the payloads and in plain SQL.
            sql = await sql_figures(db, inst, year)
            assert r.achievements.by_ip_kind == dict(x["ip_kinds"]) == sql["ip_kinds"]  # type: ignore[call-overload]
            i = r.income
            assert i.payments == sql["payments"]
            assert (i.cash_received, i.costs, i.service_fees, i.net_income) == sql["cash"]
            assert (i.team_reward, i.tto_fund, i.institution) == sql["split"]
            assert i.by_month == sql["months"]
            assert {
                k: (c.count, c.amount) for k, c in r.contracts.by_type.items() if c.count
            } == sql["contracts"]
            assert r.companies.companies_created == sql["companies"]
            equity = (r.companies.equity_registered, r.companies.state_owned_equity)
            assert equity == sql["equity"]
            assert r.achievements.disclosed == sql["disclosed"]
            tax = r.contracts.tax_preference_eligible
            assert (tax.count, tax.amount) == x["tax"] == sql["tax"]
            assert (r.poc.grants, r.poc.granted_amount) == x["poc"] == sql["poc"]
            listings = (r.listings.mandatory_triggered, r.listings.mandatory_exempted)
            assert listings == x["mandatory"] == sql["mandatory"]
            added.update(
                ip=sum(r.achievements.by_ip_kind.values()),
                tax=tax.count,
                poc=r.poc.grants,
                triggered=listings[0],
                exempted=listings[1],
            )
            corrections = [
                c.model_dump(include={"year", "events", "payments", "cash_received", "costs"})
                | {"team_reward": c.team_reward}
                for c in r.corrections
            ]
            assert corrections == _expected_corrections(dataset, inst, year)
            checked_cash += r.income.cash_received
            checked_late += sum(c.payments for c in r.corrections)
    # The data set must actually contain money, paid in more than one year.
    assert checked_cash > 0
    paid = {business_at(e).year for e in dataset.events if e.type is EventType.PAYMENT_RECEIVED}
    assert len(paid & set(YEARS)) >= 2
    # And payments delivered after their year closed, shown as corrections the year after.
    assert checked_late > 0
    # Every added figure was non-zero somewhere: an always-empty breakdown would pass too.
    assert set(+added) == {"ip", "tax", "poc", "triggered", "exempted"}, added


async def test_json_and_csv_carry_the_same_figures(
    db: asyncpg.Pool, dataset: DataSet, postgres_dsn: str
) -> None:
    inst, year = dataset.institutions[0], YEARS[1]
    built = await build_reports(db, year, inst, datetime.now(UTC))
    reports = json.loads(to_json(built))
    assert [r["institution_code"] for r in reports] == [inst]
    parsed = InstitutionAnnualReport.model_validate(reports[0])
    rows = list(csv.DictReader(io.StringIO(to_csv(built))))
    cash = next(r for r in rows if r["part"] == "income" and r["item"] == "cash_received")
    assert Decimal(cash["amount"]) == parsed.income.cash_received
    assert int(cash["count"]) == parsed.income.payments
    months = [Decimal(r["amount"]) for r in rows if r["item"].startswith("month:")]
    assert months == parsed.income.by_month


# ---------------------------------------------------------------------------- business dates

CST = ZoneInfo("Asia/Shanghai")


async def _sql_cash(db: asyncpg.Pool, inst: str, year: int) -> Decimal:
    """An independent sum: payments paid in the year in Shanghai, delivered before 10 January."""
    total: Decimal = await db.fetchval(
        """SELECT coalesce(sum((payload->>'amount')::numeric), 0) FROM lifecycle_events
        WHERE institution_code = $1 AND type = 'payment_received'
          AND extract(year FROM (payload->>'paid_at')::timestamptz AT TIME ZONE 'Asia/Shanghai')
              = $2::int
          AND occurred_at < make_timestamptz($2::int + 1, 1, 10, 0, 0, 0, 'Asia/Shanghai')""",
        inst,
        year,
    )
    return total


async def test_a_31_december_payment_delivered_in_january_counts_in_december(
    db: asyncpg.Pool,
) -> None:
    y = THIS_YEAR - 2
    ledger = Ledger()
    ledger.pay(
        "1000.00", datetime(y, 12, 31, 15, tzinfo=CST), datetime(y + 1, 1, 2, 10, tzinfo=CST)
    )
    await ledger.record(db)
    december, january = await ledger.report(db, y), await ledger.report(db, y + 1)
    assert (december.income.payments, december.income.cash_received) == (1, Decimal("1000.00"))
    assert december.income.by_month[11] == Decimal("1000.00")
    assert december.income.cash_received == await _sql_cash(db, ledger.inst, y)
    assert (january.income.payments, january.corrections) == (0, [])


async def test_the_year_turns_at_shanghai_midnight_not_utc(db: asyncpg.Pool) -> None:
    y = THIS_YEAR - 2
    before = datetime(y, 12, 31, 23, 30, tzinfo=CST)  # 15:30 UTC: the same day in UTC
    after = datetime(y + 1, 1, 1, 0, 30, tzinfo=CST)  # 16:30 UTC on 31 December, in UTC
    ledger = Ledger()
    for at, amount in ((before, "100.00"), (after, "200.00")):
        ledger.pay(amount, at, at)
        ledger.contract(amount, at, at)
        ledger.company(at, at)
        ledger.disclose(at)
    await ledger.record(db)
    old, new = await ledger.report(db, y), await ledger.report(db, y + 1)
    for report, amount, month in ((old, "100.00", 11), (new, "200.00", 0)):
        assert report.income.cash_received == Decimal(amount)
        assert report.income.by_month[month] == Decimal(amount)
        assert report.contracts.total == CountAmount(count=1, amount=Decimal(amount))
        assert report.companies.companies_created == 1
        assert report.achievements.disclosed == 1
        assert report.events_in_year == 4
        assert report.time_zone == "Asia/Shanghai"
        assert report.income.cash_received == await _sql_cash(db, ledger.inst, report.year)


async def test_a_payment_for_a_closed_year_is_a_correction_in_the_next_report(
    db: asyncpg.Pool,
) -> None:
    y = THIS_YEAR - 2
    ledger = Ledger()
    ledger.pay("500.00", datetime(y, 6, 1, tzinfo=CST), datetime(y, 6, 1, tzinfo=CST))
    await ledger.record(db)
    filed = await ledger.report(db, y)
    # Paid on 20 December, delivered after the books closed on 10 January.
    ledger.ds.events.clear()
    ledger.pay("300.00", datetime(y, 12, 20, tzinfo=CST), datetime(y + 1, 1, 10, tzinfo=CST))
    await ledger.record(db)
    again, next_year = await ledger.report(db, y), await ledger.report(db, y + 1)
    assert filed.closes_at == datetime(y + 1, 1, 10, tzinfo=CST)
    assert again.income.cash_received == filed.income.cash_received == Decimal("500.00")
    assert next_year.income.cash_received == Decimal("0.00")
    [correction] = next_year.corrections
    assert (correction.year, correction.payments, correction.events) == (y, 1, 1)
    assert correction.cash_received == Decimal("300.00")
    assert correction.costs + correction.net_income == correction.cash_received
    assert correction.net_income == (
        correction.team_reward + correction.tto_fund + correction.institution
    )
    assert correction.team_reward == Decimal("203.00")  # 70 % of 290.00
    rows = list(csv.DictReader(io.StringIO(to_csv([next_year]))))
    cash = next(r for r in rows if (r["part"], r["item"]) == (f"correction:{y}", "cash_received"))
    assert Decimal(cash["amount"]) == Decimal("300.00")
    assert "以前年度更正" in to_html([next_year], y + 1)
    assert "Corrections to earlier years" in to_html([next_year], y + 1, "en")


async def test_rebuilding_a_year_gives_the_same_report_but_generated_at(
    db: asyncpg.Pool, dataset: DataSet
) -> None:
    inst, year = dataset.institutions[1], YEARS[1]
    first = await build_institution_report(db, inst, year, datetime(2030, 1, 1, tzinfo=UTC))
    second = await build_institution_report(db, inst, year, datetime(2031, 6, 1, tzinfo=UTC))
    assert first.generated_at != second.generated_at
    assert first.model_dump(exclude={"generated_at"}) == second.model_dump(exclude={"generated_at"})
    assert first.income.cash_received > 0 or first.corrections


async def test_migration_backfills_the_business_date_of_existing_events(
    postgres_dsn: str,
) -> None:
    """Rows written before migration 0006 get their business date from the migration."""
    name = f"backfill_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = urlsplit(postgres_dsn)._replace(path=f"/{name}").geturl()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, sql in _migrations():
            if version >= "0006":
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        insert = """INSERT INTO lifecycle_events (event_id, achievement_id, workflow_id,
            institution_code, type, stage, occurred_at, source, payload)
            VALUES ($1, 'A', 'W', 'I', $2, 's', '2026-01-02T02:00:00Z', 'x', $3::jsonb)"""
        await conn.execute(
            insert, "p", "payment_received", '{"paid_at": "2025-12-31T15:00:00+08:00"}'
        )
        await conn.execute(insert, "s", "stage_entered", '{"stage": "transaction"}')
        assert "0006_business_dates" in await migrate(dsn)
        rows: dict[str, datetime] = {
            r["event_id"]: r["business_at"]
            for r in await conn.fetch("SELECT event_id, business_at FROM lifecycle_events")
        }
        assert rows["p"] == datetime(2025, 12, 31, 7, tzinfo=UTC)
        assert rows["s"] == datetime(2026, 1, 2, 2, tzinfo=UTC)
    finally:
        await conn.close()
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f"DROP DATABASE {name}")
        finally:
            await admin.close()


def test_the_report_year_before_is_on_the_jurisdictions_calendar() -> None:
    # 00:30 on 1 January in Shanghai is still 31 December in UTC.
    now = datetime(THIS_YEAR, 12, 31, 16, 30, tzinfo=UTC)
    assert previous_year(now, report_zone("CN-SH")) == THIS_YEAR
    assert previous_year(now - timedelta(hours=1), report_zone("CN-SH")) == THIS_YEAR - 1


def test_the_annual_report_schedule_fires_on_the_jurisdictions_calendar() -> None:
    spec = annual_report_schedule("q").spec
    assert spec.time_zone_name == "Asia/Shanghai"
    [calendar] = spec.calendars
    fires = datetime(
        THIS_YEAR + 1,
        calendar.month[0].start,
        calendar.day_of_month[0].start,
        calendar.hour[0].start,
        tzinfo=CST,
    )
    # After the year's books close, so the filed report is the one any rebuild gives.
    assert books_close(THIS_YEAR, CST) < fires


# ---------------------------------------------------------------------------- workflow, schedule


async def test_annual_report_workflow_submits_last_years_report(
    fresh_time_skipping_env: WorkflowEnvironment, stack: Stack, dataset: DataSet, task_queue: str
) -> None:
    inst = dataset.institutions[2]
    client = fresh_time_skipping_env.client
    async with build_worker(client, stack.deps, task_queue, stack.settings):
        result = await client.execute_workflow(
            AnnualReport.run,
            AnnualReportInput(institution_code=inst),  # no year: the one before now
            id=f"annual-report-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
    assert result.year == THIS_YEAR - 1
    assert [s.institution_code for s in result.submitted] == [inst]
    assert result.submitted[0].cash_received == _expected(dataset, inst, THIS_YEAR - 1)["cash"]
    assert (await stack.records("registry"))["annual_reports"].get(f"{inst}/{THIS_YEAR - 1}") == 1


async def test_schedule_is_idempotent_and_fires_for_every_institution(
    dev_env: WorkflowEnvironment, stack: Stack, dataset: DataSet, task_queue: str
) -> None:
    # The time-skipping test server does not implement Schedules (CreateSchedule is
    # UNIMPLEMENTED there), so the schedule itself runs on the dev server and is triggered now.
    client = dev_env.client
    schedule_id = f"annual-report-{task_queue}"
    handle = await ensure_annual_report_schedule(client, task_queue, schedule_id)
    await handle.pause(note="an operator pauses it")
    again = await ensure_annual_report_schedule(client, task_queue, schedule_id)
    try:
        described = await again.describe()
        calendar = described.schedule.spec.calendars[0]
        assert [r.start for r in calendar.month] == [1]
        assert [r.start for r in calendar.day_of_month] == [10]
        assert described.schedule.spec.time_zone_name == "Asia/Shanghai"
        assert described.schedule.state.paused, "re-applying the schedule must keep its state"
        await again.unpause()
        async with build_worker(client, stack.deps, task_queue, stack.settings):
            await again.trigger()
            started: list[str] = []
            while not started:  # waits on state (the action recorded), not on a clock
                described = await again.describe()
                started = [
                    a.action.workflow_id
                    for a in described.info.recent_actions
                    if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
                ]
                await asyncio.sleep(0.1)
            result = await client.get_workflow_handle_for(AnnualReport.run, started[0]).result()
    finally:
        await again.delete()
    assert result.year == THIS_YEAR - 1
    assert set(dataset.institutions) <= {s.institution_code for s in result.submitted}
    records = (await stack.records("registry"))["annual_reports"]
    for inst in dataset.institutions:
        assert records.get(f"{inst}/{THIS_YEAR - 1}", 0) >= 1
