"""The annual report, built from recorded lifecycle events only (SQL aggregates).

One code path for the scheduled workflow (through ReportActivities) and for
`achievements report`. The figures of a report are read in one REPEATABLE READ snapshot,
so its parts agree with each other even while events keep arriving.

The year's events are read once, for every institution at once (or just the one): one grouped
pass sums the money figures per institution, type, month of a payment and contract type or
stage, and returns the achievements disclosed, entering a stage or rewarded, whose distinct
counts (funnel, teams) are taken here. Two small queries add the field and funding of the
disclosed achievements and whether the inventors of the rewarded ones are known.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import MAX_PREC, Decimal, localcontext
from typing import Any

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity

from schemas.money import CENT
from schemas.report import (
    CONTRACT_TYPES,
    FUNNEL_STAGES,
    AchievementsPart,
    CompaniesPart,
    ContractsPart,
    CountAmount,
    DealsPart,
    IncomePart,
    InstitutionAnnualReport,
    RewardsPart,
)

log = structlog.get_logger(__name__)

_Conn = asyncpg.Connection | PoolConnectionProxy

_PAYMENT = "payment_received"
_CONTRACT = "contract_registered"
_DISCLOSED = "disclosed"
_STAGE = "stage_entered"
_EQUITY = "equity_registered"

# The grouping keys besides institution and type. Migration 0004 keeps statistics on exactly
# these expressions: without them the planner expects a group per event and sorts the year.
_MONTH = (
    "CASE WHEN type = 'payment_received'"
    " THEN date_part('month', occurred_at AT TIME ZONE 'UTC')::int END"
)
_KEY = (
    "CASE type WHEN 'contract_registered' THEN payload->>'contract_type'"
    " WHEN 'stage_entered' THEN payload->>'stage' END"
)

# $1 start of the year, $2 start of the next (UTC), [$3 institution]. Amounts are JSON strings
# written by the workflow from Decimal, so numeric casts are exact. Each sum is filtered by
# type: a key of the same name in another event's payload is never read.
_FIGURES = f"""
SELECT institution_code, type, {_MONTH} AS month, {_KEY} AS key, count(*) AS n,
    sum((payload->>'amount')::numeric)
        FILTER (WHERE type IN ('payment_received', 'contract_registered')) AS amount,
    sum((payload->>'verified_amount')::numeric)
        FILTER (WHERE type = 'contract_registered') AS verified,
    sum((payload->>'costs')::numeric) FILTER (WHERE type = 'payment_received') AS costs,
    sum((payload->'distribution'->>'net_income')::numeric)
        FILTER (WHERE type = 'payment_received') AS net,
    sum((payload->'distribution'->>'team_reward')::numeric)
        FILTER (WHERE type = 'payment_received') AS team,
    sum((payload->'distribution'->>'tto_fund')::numeric)
        FILTER (WHERE type = 'payment_received') AS tto,
    sum((payload->'distribution'->>'institution')::numeric)
        FILTER (WHERE type = 'payment_received') AS inst,
    sum((payload->'distribution'->>'team_owner_income')::numeric)
        FILTER (WHERE type = 'payment_received') AS owned,
    count(*) FILTER (
        WHERE type = 'equity_registered' AND (payload->>'state_owned_equity')::boolean
    ) AS state_owned,
    -- The value of the equity the institution holds (not the team's part, item 3), each
    -- registration rounded half up to the cent.
    sum(round((payload->>'valuation')::numeric * ((payload->>'equity_share')::numeric
        - coalesce((payload->>'team_equity_share')::numeric, 0)) / 100, 2))
        FILTER (WHERE type = 'equity_registered') AS equity_held,
    -- With repeats. count(DISTINCT) here would rule out a parallel, partial aggregation.
    array_agg(achievement_id) FILTER (
        WHERE type IN ('disclosed', 'stage_entered')
           OR (type = 'payment_received'
               AND (payload->'distribution'->>'team_reward')::numeric > 0)
    ) AS achievements
FROM lifecycle_events
WHERE occurred_at >= $1 AND occurred_at < $2"""
_FIGURES_GROUP = "\nGROUP BY 1, 2, 3, 4"

# Disclosed events by the field and funding of their achievement, from the current-state row
# kept in step with the events. $1: {institution: [achievement of each disclosed event]}, as
# JSON text (one string to send, not 40,000). Materialized, so the planner hashes the
# achievements rather than look them up one by one.
_FIELDS = """
WITH disclosed AS MATERIALIZED (
    SELECT d.institution_code, e.achievement_id
    FROM jsonb_each($1::text::jsonb) AS d(institution_code, ids),
         jsonb_array_elements_text(d.ids) AS e(achievement_id)
)
SELECT d.institution_code, a.field, a.funding_kinds, count(*) AS n
FROM disclosed d LEFT JOIN achievements a ON a.achievement_id = d.achievement_id
GROUP BY 1, 2, 3
"""

# Disclosed achievements by their ownership, from their disclosed events ($1 as for _FIELDS).
_OWNERSHIP = """
WITH disclosed AS MATERIALIZED (
    SELECT d.institution_code, e.achievement_id
    FROM jsonb_each($1::text::jsonb) AS d(institution_code, ids),
         jsonb_array_elements_text(d.ids) AS e(achievement_id)
)
SELECT d.institution_code, coalesce(e.payload->>'ownership', 'unknown') AS ownership, count(*) AS n
FROM disclosed d
JOIN lifecycle_events e ON e.achievement_id = d.achievement_id AND e.type = 'disclosed'
GROUP BY 1, 2
"""

# People rewarded: the inventors in the disclosed events of the achievements whose team got a
# reward in the year. Unknown as soon as one of them has no disclosed event or one listing no
# inventors: the first such payment ends the search. $1, $2 the year, $3 the institutions.
_REWARDED = """
    SELECT p.achievement_id FROM lifecycle_events p
    WHERE p.institution_code = {code} AND p.occurred_at >= $1 AND p.occurred_at < $2
      AND p.type = 'payment_received'
      AND (p.payload->'distribution'->>'team_reward')::numeric > 0"""
_INVENTORS_UNKNOWN = f"""
SELECT code, EXISTS ({_REWARDED.format(code="code")}
      AND NOT coalesce((
          SELECT bool_and(jsonb_typeof(d.payload->'inventors') IS NOT DISTINCT FROM 'array')
          FROM lifecycle_events d
          WHERE d.achievement_id = p.achievement_id AND d.type = 'disclosed'), false)
) AS unknown
FROM unnest($3::text[]) AS code
"""
# Asked only when every disclosed event of those achievements lists its inventors.
_PEOPLE = f"""
SELECT count(DISTINCT person->>'name')
FROM lifecycle_events d, jsonb_array_elements(d.payload->'inventors') AS person
WHERE d.type = 'disclosed' AND d.achievement_id IN ({_REWARDED.format(code="$3")})
"""

# Institutions with any event in the year: each files a report for it.
_ACTIVE = """
SELECT i.institution_code FROM (SELECT DISTINCT institution_code FROM achievements) i
WHERE EXISTS (
    SELECT 1 FROM lifecycle_events e WHERE e.institution_code = i.institution_code
      AND e.occurred_at >= $1 AND e.occurred_at < $2)
ORDER BY 1
"""
# The same for the institutions found with events in the year by _FIGURES ($1).
_KNOWN = """
SELECT code FROM unnest($1::text[]) AS code
WHERE EXISTS (SELECT 1 FROM achievements a WHERE a.institution_code = code)
ORDER BY 1
"""

# The arrays of _FIGURES take a few MB per process; at the default 4MB the planner sorts the
# year's events rather than hash a few hundred groups. The parameters (a year) always cover a
# large share of the table, which a generic plan would not assume.
_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL plan_cache_mode = force_custom_plan"


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def _money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(CENT)


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    """Exact, whatever the digits: the default context rounds to 28."""
    with localcontext(prec=MAX_PREC):
        return sum((v for v in values if v is not None), Decimal(0))


async def active_institutions(pool: asyncpg.Pool, year: int) -> list[str]:
    rows = await pool.fetch(_ACTIVE, *year_bounds(year))
    return [r["institution_code"] for r in rows]


class _Events:
    """One institution's rows of _FIGURES: its year's events in (type, month, key) groups."""

    def __init__(self, rows: Sequence[asyncpg.Record] = ()) -> None:
        self.rows = rows

    def of(self, type: str) -> list[asyncpg.Record]:
        return [r for r in self.rows if r["type"] == type]

    def count(self, type: str) -> int:
        return sum(r["n"] for r in self.of(type))

    def total(self, column: str, type: str = _PAYMENT) -> Decimal:
        return _sum(r[column] for r in self.of(type))

    def achievements(self, type: str) -> list[str]:
        """With repeats: one per disclosed event, stage entered or rewarded payment."""
        return [aid for r in self.of(type) for aid in r["achievements"] or ()]

    def funnel(self) -> dict[str, int]:
        """Distinct achievements entering each stage; being disclosed enters the first."""
        entered: dict[str | None, set[str]] = defaultdict(set)
        entered["disclosure"].update(self.achievements(_DISCLOSED))
        for r in self.of(_STAGE):
            entered[r["key"]].update(r["achievements"] or ())
        return {stage: len(entered[stage]) for stage in FUNNEL_STAGES}


async def _figures(conn: _Conn, year: int, institution: str | None) -> dict[str, _Events]:
    if institution is None:
        rows = await conn.fetch(_FIGURES + _FIGURES_GROUP, *year_bounds(year))
    else:
        sql = _FIGURES + " AND institution_code = $3" + _FIGURES_GROUP
        rows = await conn.fetch(sql, *year_bounds(year), institution)
    by_institution: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        by_institution[r["institution_code"]].append(r)
    return {code: _Events(rs) for code, rs in by_institution.items()}


_Dims = dict[str, dict[str, int]]


async def _fields(conn: _Conn, events: dict[str, _Events]) -> dict[str, _Dims]:
    """Disclosed achievements per institution, by field and by funding kind."""
    disclosed = {code: e.achievements(_DISCLOSED) for code, e in events.items()}
    dims: dict[str, _Dims] = defaultdict(lambda: {"field": {}, "funding": {}, "ownership": {}})
    for r in await conn.fetch(_FIELDS, json.dumps(disclosed)):
        d = dims[r["institution_code"]]
        field = r["field"] if r["field"] is not None else "unknown"
        d["field"][field] = d["field"].get(field, 0) + r["n"]
        for kind in r["funding_kinds"] or ():
            d["funding"][kind] = d["funding"].get(kind, 0) + r["n"]
    for r in await conn.fetch(_OWNERSHIP, json.dumps(disclosed)):
        dims[r["institution_code"]]["ownership"][r["ownership"]] = r["n"]
    return dims


async def _people(conn: _Conn, year: int, codes: list[str]) -> dict[str, int | None]:
    people: dict[str, int | None] = {}
    for r in await conn.fetch(_INVENTORS_UNKNOWN, *year_bounds(year), codes):
        known = not r["unknown"]
        people[r["code"]] = (
            await conn.fetchval(_PEOPLE, *year_bounds(year), r["code"]) if known else None
        )
    return people


def _report(
    institution: str,
    year: int,
    generated_at: datetime,
    e: _Events,
    dims: _Dims,
    people: int | None,
) -> InstitutionAnnualReport:
    by_type = {kind: CountAmount() for kind in CONTRACT_TYPES}
    for r in e.of(_CONTRACT):
        by_type[r["key"]] = CountAmount(count=r["n"], amount=_money(r["amount"]))
    by_month = [Decimal("0.00")] * 12
    for r in e.of(_PAYMENT):
        by_month[r["month"] - 1] = _money(r["amount"])
    equity_held = _money(e.total("equity_held", _EQUITY))
    team = _money(e.total("team"))
    return InstitutionAnnualReport(
        institution_code=institution,
        year=year,
        generated_at=generated_at,
        events_in_year=sum(r["n"] for r in e.rows),
        achievements=AchievementsPart(
            disclosed=e.count(_DISCLOSED),
            by_field=dict(sorted(dims["field"].items())),
            by_funding_kind=dict(sorted(dims["funding"].items())),
            by_ownership=dict(sorted(dims["ownership"].items())),
        ),
        deals=DealsPart(
            transfers=by_type["transfer"],
            licences=by_type["licence"],
            equity_investments=CountAmount(count=e.count(_EQUITY), amount=equity_held),
        ),
        contracts=ContractsPart(
            by_type=by_type,
            total=CountAmount(
                count=sum(c.count for c in by_type.values()),
                amount=sum((c.amount for c in by_type.values()), Decimal("0.00")),
            ),
            verified_total=_money(e.total("verified", _CONTRACT)),
        ),
        income=IncomePart(
            payments=e.count(_PAYMENT),
            cash_received=_money(e.total("amount")),
            costs=_money(e.total("costs")),
            net_income=_money(e.total("net")),
            team_reward=team,
            tto_fund=_money(e.total("tto")),
            institution=_money(e.total("inst")),
            by_month=by_month,
            team_owner_income=_money(e.total("owned")),
        ),
        rewards=RewardsPart(
            rewards_paid=team,
            teams_rewarded=len(set(e.achievements(_PAYMENT))),
            people_rewarded=people,
        ),
        companies=CompaniesPart(
            companies_created=e.count("company_founded"),
            equity_registered=e.count(_EQUITY),
            state_owned_equity=sum(r["state_owned"] for r in e.of(_EQUITY)),
            equity_held=equity_held,
        ),
        funnel=e.funnel(),
    )


async def _build(
    pool: asyncpg.Pool, year: int, institution: str | None, generated_at: datetime
) -> list[InstitutionAnnualReport]:
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(_SETTINGS)
            events = await _figures(conn, year, institution)
            if institution is None:
                codes = [r["code"] for r in await conn.fetch(_KNOWN, sorted(events))]
            else:
                codes = [institution]
            dims = await _fields(conn, events)
            people = await _people(conn, year, codes)
    return [
        _report(code, year, generated_at, events.get(code, _Events()), dims[code], people[code])
        for code in codes
    ]


async def build_institution_report(
    pool: asyncpg.Pool, institution: str, year: int, generated_at: datetime
) -> InstitutionAnnualReport:
    [report] = await _build(pool, year, institution, generated_at)
    return report


async def build_reports(
    pool: asyncpg.Pool, year: int, institution: str | None, generated_at: datetime
) -> list[InstitutionAnnualReport]:
    """What `achievements report` prints: one report per institution (or just the one)."""
    return await _build(pool, year, institution, generated_at)


class ReportActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="report.active_institutions")
    async def active_institutions(self, year: int) -> list[str]:
        return await active_institutions(self._pool, year)

    @activity.defn(name="report.build_institution_report")
    async def build_institution_report(
        self, institution: str, year: int, generated_at: datetime
    ) -> InstitutionAnnualReport:
        report = await build_institution_report(self._pool, institution, year, generated_at)
        log.info(
            "annual_report_built",
            institution_code=institution,
            year=year,
            events=report.events_in_year,
            workflow_id=activity.info().workflow_id,
        )
        return report


def report_rows(report: InstitutionAnnualReport) -> list[dict[str, Any]]:
    """Flat (part, item, count, amount) rows: the CSV format, and easy to eyeball."""
    rows: list[dict[str, Any]] = []

    def add(part: str, item: str, count: int | None = None, amount: Decimal | None = None) -> None:
        rows.append(
            {
                "institution": report.institution_code,
                "year": report.year,
                "part": part,
                "item": item,
                "count": "" if count is None else count,
                "amount": "" if amount is None else str(amount),
            }
        )

    a = report.achievements
    add("achievements", "disclosed", a.disclosed)
    for k, n in a.by_field.items():
        add("achievements", f"field:{k}", n)
    for k, n in a.by_funding_kind.items():
        add("achievements", f"funding:{k}", n)
    for k, n in a.by_ownership.items():
        add("achievements", f"ownership:{k}", n)
    d = report.deals
    add("deals", "transfers", d.transfers.count, d.transfers.amount)
    add("deals", "licences", d.licences.count, d.licences.amount)
    add("deals", "equity_investments", d.equity_investments.count, d.equity_investments.amount)
    for k, ca in report.contracts.by_type.items():
        add("contracts", k, ca.count, ca.amount)
    add("contracts", "total", report.contracts.total.count, report.contracts.total.amount)
    add("contracts", "verified_total", amount=report.contracts.verified_total)
    i = report.income
    add("income", "cash_received", i.payments, i.cash_received)
    for name in (
        "costs",
        "net_income",
        "team_owner_income",
        "team_reward",
        "tto_fund",
        "institution",
    ):
        add("income", name, amount=getattr(i, name))
    for month, cash in enumerate(i.by_month, start=1):
        add("income", f"month:{month:02d}", amount=cash)
    r = report.rewards
    add("rewards", "rewards_paid", amount=r.rewards_paid)
    add("rewards", "teams_rewarded", r.teams_rewarded)
    add("rewards", "people_rewarded", r.people_rewarded)
    co = report.companies
    add("companies", "companies_created", co.companies_created)
    add("companies", "equity_registered", co.equity_registered, co.equity_held)
    add("companies", "state_owned_equity", co.state_owned_equity)
    for stage, n in report.funnel.items():
        add("funnel", stage, n)
    return rows
