"""The annual report: figures against independent sums, formats, Chromium, workflow, schedule."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import re
import shutil
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pypdfium2 as pdfium
import pytest
import pytest_asyncio
from conftest import Stack
from report_data import DataSet, business_at, generate, record, sql_figures
from temporalio.client import ScheduleActionExecutionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from activities.report.amounts import (
    axis_unit,
    decade_label,
    linear_ticks,
    log_ticks,
    short,
    tick_label,
    yuan,
)
from activities.report.charts import COLOURS, bars_svg
from activities.report.pdf import chinese_fonts
from activities.report.sections import SECTIONS, Section
from activities.report_render import (
    PdfUnavailable,
    check_pdf_support,
    to_csv,
    to_html,
    to_json,
    to_pdf,
)
from activities.reports import build_institution_report, build_reports
from activities.store import _migrations, migrate
from schemas.events import EventType, LifecycleEvent
from schemas.policy import DEFAULT_POLICY
from schemas.report import (
    AnnualReportInput,
    CountAmount,
    InstitutionAnnualReport,
    books_close,
    previous_year,
    report_zone,
)
from schemas.transaction import Distribution, Payment
from schemas.views import AchievementView
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
            # The parts add up to the cent: cash = costs + net; net = reward + fund + institution.
            assert r.income.cash_received == r.income.costs + r.income.net_income
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
            assert (i.cash_received, i.costs, i.net_income) == sql["cash"]
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


class _Ledger:
    """One fresh institution's hand-written events, recorded through the real projection."""

    def __init__(self) -> None:
        self.inst = f"B{uuid.uuid4().hex[:6].upper()}"
        self.ds = DataSet(institutions=[self.inst], years=[])

    def _emit(
        self, type: EventType, payload: dict[str, Any], occurred_at: datetime, n: int
    ) -> None:
        aid = f"{self.inst}-{n:03d}"
        self.ds.events.append(
            LifecycleEvent(
                event_id=str(uuid.uuid4()),
                achievement_id=aid,
                workflow_id=f"achievement-{aid}",
                institution_code=self.inst,
                type=type,
                stage="transaction",
                occurred_at=occurred_at,
                source="test",
                payload=payload,
            )
        )
        self.ds.views[aid] = AchievementView(
            achievement_id=aid,
            workflow_id=f"achievement-{aid}",
            institution_code=self.inst,
            title=f"Dated achievement {aid}",
            field="biomedicine",
            stage="transaction",
            modes=["licence"],
            funding_kinds=[],
            mandatory_listing_due=None,
            waiting_on=None,
            waiting_until=None,
            synthetic=True,
            updated_at=occurred_at,
        )

    def pay(self, amount: str, paid_at: datetime, delivered: datetime) -> None:
        n = len(self.ds.events)
        payment = Payment(
            event_id=f"pay-{self.inst}-{n}",
            exchange="sstec",
            listing_id=f"L-{self.inst}-{n}",
            instalment=1,
            amount=Decimal(amount),
            costs=Decimal("10.00"),
            paid_at=paid_at,
        )
        distribution = Distribution.of(payment, DEFAULT_POLICY, team_rounds_up=True)
        payload = {
            **payment.model_dump(mode="json"),
            "distribution": distribution.model_dump(mode="json"),
        }
        self._emit(EventType.PAYMENT_RECEIVED, payload, delivered, n)

    def contract(self, amount: str, registered_at: datetime, delivered: datetime) -> None:
        payload = {
            "certificate_number": "TC-1",
            "verified_amount": amount,
            "tax_preference_eligible": True,
            "registered_at": registered_at.isoformat(),
            "contract_type": "licence",
            "amount": amount,
        }
        self._emit(EventType.CONTRACT_REGISTERED, payload, delivered, len(self.ds.events))

    def company(self, founded_at: datetime, delivered: datetime) -> None:
        payload = {"company_name": "Spin-off", "founded_at": founded_at.isoformat()}
        self._emit(EventType.COMPANY_FOUNDED, payload, delivered, len(self.ds.events))

    def disclose(self, disclosed_at: datetime) -> None:
        self._emit(EventType.DISCLOSED, {"title": "x"}, disclosed_at, len(self.ds.events))

    async def record(self, db: asyncpg.Pool) -> None:
        await record(db, self.ds.events, self.ds)

    async def report(self, db: asyncpg.Pool, year: int) -> InstitutionAnnualReport:
        return await build_institution_report(db, self.inst, year, datetime.now(UTC))


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
    ledger = _Ledger()
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
    ledger = _Ledger()
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
    ledger = _Ledger()
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


# ---------------------------------------------------------------------------- HTML in Chromium


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes) into rows of pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    prev = bytearray(stride)
    for y in range(height):
        at = y * (stride + 1)
        f, line = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    rgb = [bytes(r[i] for i in range(len(r)) if i % channels < 3) for r in rows]
    return width, height, rgb


def _count_colour(rows: list[bytes], hex_colour: str) -> int:
    target = bytes.fromhex(hex_colour.lstrip("#"))
    return sum(1 for row in rows for i in range(0, len(row), 3) if row[i : i + 3] == target)


def _keep_and_decode(shot: Path) -> tuple[int, int, list[bytes]]:
    keep = os.environ.get("ACHIEVEMENTS_SCREENSHOT_DIR")  # e.g. a CI artifact folder
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "annual_report.png")
    return _png_pixels(shot.read_bytes())


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "Chromium is not installed: apt-get install -y chromium"
        if os.environ.get("ACHIEVEMENTS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium


async def _screenshot(
    html: str, tmp_path: Path, size: tuple[int, int], keep: bool = False
) -> tuple[int, int, list[bytes]]:
    """The page as headless Chromium paints it, decoded into rows of RGB pixels."""
    chromium = _chromium()
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(html, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={shot}",
        page.as_uri(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0 and shot.exists(), output.decode(errors="replace")[-2000:]
    if keep:
        return await asyncio.to_thread(_keep_and_decode, shot)
    return await asyncio.to_thread(_png_pixels, shot.read_bytes())


async def test_html_report_renders_its_charts_in_chromium(
    db: asyncpg.Pool, dataset: DataSet, tmp_path: Path
) -> None:
    _chromium()
    inst, year = dataset.institutions[0], YEARS[1]
    report = await build_institution_report(db, inst, year, datetime.now(UTC))
    assert report.income.cash_received > 0 and report.contracts.total.count > 0
    html = to_html([report], year)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html  # self-contained, nothing fetched
    # Chinese first: the title, the six parts and the plan's terms.
    assert '<html lang="zh-CN">' in html and "科技成果转化年度报告" in html
    for part in ("一、科技成果情况", "三、技术合同", "六、创设企业与股权", "概念验证资助"):
        assert part in html
    # Tall enough for the whole report: the funnel is its last chart.
    width, height, rows = await _screenshot(html, tmp_path, (1280, 4000), keep=True)
    assert (width, height) == (1280, 4000)
    # The funnel's bars (one colour per stage) and the cash bars must be painted, not just text.
    painted = {c: _count_colour(rows, c) for c in ("#1f6feb", "#2da44e", "#bf8700", "#cf222e")}
    assert all(n > 200 for n in painted.values()), painted


def test_html_report_in_english_on_request(dataset: DataSet) -> None:
    report = _dwarfed_report()
    html = to_html([report], report.year, "en")
    assert '<html lang="en">' in html and "1. Achievements" in html
    assert "一、科技成果情况" not in html
    assert "Contracts eligible for the tax preference" in html


def test_a_part_is_one_section_with_its_own_words() -> None:
    """The six parts first, in the statutory order; a part added later is one Section with its
    title, its own terms in both languages and its render function, nothing else to touch."""
    assert [s.key for s in SECTIONS][:6] == [
        "achievements",
        "deals",
        "contracts",
        "income",
        "rewards",
        "companies",
    ]
    brokers = Section(
        "brokers",
        ("技术经理人", "Technology managers"),
        lambda r, w: w.table([(w("deals"), 3, Decimal("1200000.00"), 0)]),
        terms={"deals": ("经纪成交", "Brokered deals")},
    )
    report = _dwarfed_report()
    zh, en = brokers.html(report, "zh"), brokers.html(report, "en")
    assert "<h3>技术经理人</h3>" in zh and "经纪成交" in zh and "1,200,000.00" in zh
    assert "<h3>Technology managers</h3>" in en and "Brokered deals" in en
    assert 'data-part="brokers"' in zh


# -------------------------------------------------------------------------- charts and the PDF


def test_axis_ticks_fall_on_round_values() -> None:
    for top in ("1000000000", "500600000", "1200000", "99999", "7", "0.5", "3.14", "0"):
        ticks = linear_ticks(Decimal(top))
        step = ticks[1] - ticks[0]
        assert (
            ticks[0] == 0 and ticks[-1] >= Decimal(top) and ticks[-2] < Decimal(top)
        ) or top == "0"
        # Every step is 1, 2 or 5 times a power of ten, and the ticks are its multiples.
        assert step.normalize().as_tuple().digits in ((1,), (2,), (5,)), (top, step)
        assert all(b - a == step for a, b in itertools.pairwise(ticks))
    # The axis of the issue: a 500.6 M top reads 0-600 in one unit, never "500.6".
    unit, name = axis_unit(Decimal("600000000"), "en")
    assert name == "¥M"
    labels = [tick_label(v, unit) for v in linear_ticks(Decimal("500600000"))]
    assert labels == ["0", "200", "400", "600"]
    unit, name = axis_unit(Decimal("1000000000"), "zh")
    assert (name, [tick_label(v, unit) for v in linear_ticks(Decimal("1E9"))]) == (
        "亿元",
        ["0", "2", "4", "6", "8", "10"],
    )
    assert [decade_label(v, "zh") for v in log_ticks(Decimal("100000"), Decimal("1E9"))] == [
        "10万",
        "100万",
        "1,000万",
        "1亿",
        "10亿",
    ]
    # Amounts: 元 in full grouped by thousands, 万元 / 亿元 short.
    assert yuan(Decimal("1234567.8")) == "1,234,567.80"
    assert short(Decimal("1234567.89"), "zh") == "123.46 万元"
    assert short(Decimal("1000000000"), "zh") == "10.00 亿元"


def _dwarfed_report() -> InstitutionAnnualReport:
    """A report whose contracts differ by three orders of magnitude, and no other chart ink."""
    amounts = {
        "development": "1000000000.00",
        "transfer": "1200000.00",
        "licence": "0.00",
        "consulting": "35000.00",
        "service": "500600000.00",
    }
    by_type = {
        k: CountAmount(count=1 if v != "0.00" else 0, amount=Decimal(v)) for k, v in amounts.items()
    }
    total = CountAmount(count=4, amount=sum((c.amount for c in by_type.values()), Decimal(0)))
    zero = Decimal("0.00")
    return InstitutionAnnualReport.model_validate(
        {
            "institution_code": "SYN-UNI",
            "year": THIS_YEAR - 1,
            "generated_at": datetime.now(UTC),
            "events_in_year": 9,
            "achievements": {
                "disclosed": 2,
                "by_field": {"biomedicine": 2},
                "by_funding_kind": {},
                "by_ip_kind": {"patent": 3, "technical_secret": 1},
            },
            "deals": {
                "transfers": by_type["transfer"],
                "licences": by_type["licence"],
                "equity_investments": CountAmount(),
            },
            "contracts": {
                "by_type": by_type,
                "total": total,
                "verified_total": total.amount,
                "tax_preference_eligible": by_type["development"],
            },
            "income": {
                "payments": 0,
                "cash_received": zero,
                "costs": zero,
                "net_income": zero,
                "team_reward": zero,
                "tto_fund": zero,
                "institution": zero,
                "by_month": [zero] * 12,
            },
            "rewards": {"rewards_paid": zero, "teams_rewarded": 0, "people_rewarded": None},
            "companies": {
                "companies_created": 0,
                "equity_registered": 0,
                "state_owned_equity": 0,
                "equity_held": zero,
            },
            "poc": {"grants": 1, "granted_amount": "300000.00"},
            "funnel": {},
        }
    )


def _bars(svg: str) -> list[tuple[float, float, float, str]]:
    """(x, width, height, fill) of each bar the chart draws."""
    return [
        (float(x), float(w), float(h), fill)
        for x, w, h, fill in re.findall(
            r'<rect class="bar" data-value="[^"]*" x="([\d.]+)" y="[\d.]+" width="([\d.]+)" '
            r'height="([\d.]+)" fill="(#[0-9a-f]{6})"',
            svg,
        )
    ]


async def test_a_small_bar_stays_visible_beside_a_huge_one(tmp_path: Path) -> None:
    """1.2 M beside 1.0 B: the axis turns logarithmic, says so, and every bar is painted."""
    report = _dwarfed_report()
    values = [c.amount for c in report.contracts.by_type.values()]
    svg = bars_svg("contracts", list(report.contracts.by_type), values, "zh")
    assert 'data-scale="log"' in svg and "对数刻度" in svg
    bars = _bars(svg)
    assert len(bars) == 5
    for (_, _, h, _), value in zip(bars, values, strict=True):
        assert (h > 10) if value else (h == 0), (value, h)
    # Linear when the values are alike, its caption saying so and naming the unit.
    alike = bars_svg("x", ["a", "b"], [Decimal("800000"), Decimal("1000000")], "zh")
    assert 'data-scale="linear"' in alike and "线性刻度, 万元" in alike
    # Painted: in Chromium, each non-zero bar's own colour fills its column for several pixels.
    page = f"<!doctype html><body style='margin:0'>{svg}</body>"
    _, _, rows = await _screenshot(page, tmp_path, (640, 280))
    for (x, w, _, fill), value in zip(bars, values, strict=True):
        target = bytes.fromhex(fill[1:])
        column = [row[int(x + w / 2) * 3 : int(x + w / 2) * 3 + 3] for row in rows]
        painted = sum(1 for px in column if px == target)
        assert (painted >= 8) if value else (painted == 0), (fill, value, painted)


def _pdf_pages(pdf: bytes) -> list[Any]:
    """The PDF's pages as PIL images, at 100 dpi."""
    document = pdfium.PdfDocument(pdf)
    try:
        return [page.render(scale=100 / 72).to_pil().convert("RGB") for page in document]
    finally:
        document.close()


def _near(image: Any, hex_colour: str, tolerance: int = 12) -> int:
    """Pixels within `tolerance` of a colour (the PDF's colours are anti-aliased at edges)."""
    r, g, b = bytes.fromhex(hex_colour[1:])
    data = image.tobytes()
    return sum(
        1
        for i in range(0, len(data), 3)
        if abs(data[i] - r) <= tolerance
        and abs(data[i + 1] - g) <= tolerance
        and abs(data[i + 2] - b) <= tolerance
    )


async def test_pdf_report_prints_in_chinese_with_every_bar() -> None:
    try:
        check_pdf_support()
    except PdfUnavailable as exc:
        if os.environ.get("ACHIEVEMENTS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    report = _dwarfed_report()
    pdf = await asyncio.to_thread(to_pdf, [report], report.year)
    assert pdf.startswith(b"%PDF-")
    pages = await asyncio.to_thread(_pdf_pages, pdf)
    assert pages, "no page"
    document = pdfium.PdfDocument(pdf)
    try:
        text = "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    assert "科技成果转化年度报告" in text and "技术转让" in text and "专利" in text
    # Ink where the charts are: each non-zero contract bar's colour (nothing else uses them).
    inked = [len(p.tobytes()) // 3 - _near(p, "#ffffff", 0) for p in pages]
    assert inked[0] > 10_000, inked
    for colour, value in zip(COLOURS, report.contracts.by_type.values(), strict=False):
        found = sum(_near(p, colour) for p in pages)
        assert (found > 40) if value.amount else (found < 40), (colour, value, found)


def test_pdf_without_a_chinese_font_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fontconfig with no font at all (an empty configuration) stands for a machine without
    fonts-noto-cjk: one clear error naming the package, not a PDF of empty boxes."""
    empty = tmp_path / "fonts.conf"
    empty.write_text('<?xml version="1.0"?><fontconfig></fontconfig>', encoding="utf-8")
    monkeypatch.setenv("FONTCONFIG_FILE", str(empty))
    assert chinese_fonts() == 0
    with pytest.raises(PdfUnavailable, match="fonts-noto-cjk"):
        to_pdf([_dwarfed_report()], THIS_YEAR - 1)


async def test_gateway_serves_the_report_as_pdf_and_in_either_language(
    stack: Stack, dataset: DataSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP with the regulator's real token: ?format=pdf, Accept: application/pdf, lang."""
    inst, year = dataset.institutions[0], YEARS[1]
    headers = await stack.headers("regulator.shstc")
    url = f"{stack.gateway_url}/reports/annual/{year}"
    async with httpx.AsyncClient(timeout=120) as http:
        html = await http.get(url, params={"institution": inst, "format": "html"}, headers=headers)
        english = await http.get(
            url, params={"institution": inst, "format": "html", "lang": "en"}, headers=headers
        )
        bad = await http.get(url, params={"institution": inst, "lang": "fr"}, headers=headers)
        try:
            check_pdf_support()
        except PdfUnavailable:
            pdf_ready = False
        else:
            pdf_ready = True
        if pdf_ready:
            asked = await http.get(
                url, params={"institution": inst, "format": "pdf"}, headers=headers
            )
            accepted = await http.get(
                url, params={"institution": inst}, headers=headers | {"Accept": "application/pdf"}
            )
        # A server without a font covering Chinese: one clear error, before any figure is read.
        empty = tmp_path / "fonts.conf"
        empty.write_text('<?xml version="1.0"?><fontconfig></fontconfig>', encoding="utf-8")
        monkeypatch.setenv("FONTCONFIG_FILE", str(empty))
        missing = await http.get(
            url, params={"institution": inst, "format": "pdf"}, headers=headers
        )
    assert html.status_code == 200 and "科技成果转化年度报告" in html.text, html.text[:300]
    assert english.status_code == 200 and "1. Achievements" in english.text
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.lang", bad.text
    assert missing.status_code == 503, missing.text
    assert "fonts-noto-cjk" in missing.json()["detail"]
    if not pdf_ready:
        pytest.skip("this machine cannot print PDF: checked the error only")
    for response in (asked, accepted):
        assert response.status_code == 200, response.text[:300]
        assert response.headers["content-type"] == "application/pdf"
        assert response.content.startswith(b"%PDF-")
        assert f"annual-report-{year}-{inst}-zh.pdf" in response.headers["content-disposition"]
    pages = await asyncio.to_thread(_pdf_pages, asked.content)
    assert pages and _near(pages[0], "#ffffff", 0) < len(pages[0].tobytes()) // 3


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
