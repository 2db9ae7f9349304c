"""The annual report, built from recorded lifecycle events only (SQL aggregates).

One code path for the scheduled workflow (through ReportActivities) and for
`achievements report`. The figures of a report are read in one REPEATABLE READ snapshot,
so its parts agree with each other even while events keep arriving.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
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

# $1 institution, $2 start of the year, $3 start of the next (UTC). Amounts are JSON strings
# written by the workflow from Decimal, so numeric casts are exact.
_IN_YEAR = "institution_code = $1 AND occurred_at >= $2 AND occurred_at < $3"
_PAYMENT = "type = 'payment_received'"

_TOTALS = f"""
SELECT
    count(*) AS events,
    count(*) FILTER (WHERE {_PAYMENT}) AS payments,
    sum((payload->>'amount')::numeric) FILTER (WHERE {_PAYMENT}) AS cash,
    sum((payload->>'costs')::numeric) FILTER (WHERE {_PAYMENT}) AS costs,
    sum((payload->'distribution'->>'net_income')::numeric) FILTER (WHERE {_PAYMENT}) AS net,
    sum((payload->'distribution'->>'team_reward')::numeric) FILTER (WHERE {_PAYMENT}) AS team,
    sum((payload->'distribution'->>'tto_fund')::numeric) FILTER (WHERE {_PAYMENT}) AS tto,
    sum((payload->'distribution'->>'institution')::numeric) FILTER (WHERE {_PAYMENT}) AS inst,
    count(DISTINCT achievement_id) FILTER (
        WHERE {_PAYMENT} AND (payload->'distribution'->>'team_reward')::numeric > 0) AS teams,
    count(*) FILTER (WHERE type = 'company_founded') AS companies,
    count(*) FILTER (WHERE type = 'equity_registered') AS equity,
    count(*) FILTER (
        WHERE type = 'equity_registered' AND (payload->>'state_owned_equity')::boolean
    ) AS state_owned,
    -- The value of the equity held, each registration rounded half up to the cent.
    sum(round((payload->>'valuation')::numeric * (payload->>'equity_share')::numeric / 100, 2))
        FILTER (WHERE type = 'equity_registered') AS equity_held
FROM lifecycle_events WHERE {_IN_YEAR}
"""

_CONTRACTS = f"""
SELECT payload->>'contract_type' AS contract_type, count(*) AS n,
       sum((payload->>'amount')::numeric) AS amount,
       sum((payload->>'verified_amount')::numeric) AS verified
FROM lifecycle_events WHERE {_IN_YEAR} AND type = 'contract_registered'
GROUP BY 1
"""

_MONTHS = f"""
SELECT extract(month FROM occurred_at AT TIME ZONE 'UTC')::int AS month,
       sum((payload->>'amount')::numeric) AS cash
FROM lifecycle_events WHERE {_IN_YEAR} AND {_PAYMENT}
GROUP BY 1
"""

_FUNNEL = f"""
SELECT CASE WHEN type = 'disclosed' THEN 'disclosure' ELSE payload->>'stage' END AS stage,
       count(DISTINCT achievement_id) AS n
FROM lifecycle_events WHERE {_IN_YEAR} AND type IN ('disclosed', 'stage_entered')
GROUP BY 1
"""

# Field and funding come from the current-state row kept in step with the events.
_DISCLOSED = """
WITH disclosed AS (
    SELECT e.achievement_id, coalesce(a.field, 'unknown') AS field,
           coalesce(a.funding_kinds, '{}') AS funding_kinds
    FROM lifecycle_events e LEFT JOIN achievements a USING (achievement_id)
    WHERE e.institution_code = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3
      AND e.type = 'disclosed'
)
SELECT 'field' AS dim, field AS key, count(*) AS n FROM disclosed GROUP BY field
UNION ALL
SELECT 'funding', kind, count(*) FROM disclosed, unnest(funding_kinds) AS kind GROUP BY kind
UNION ALL
SELECT 'total', '', count(*) FROM disclosed
"""

# People rewarded: the inventors in the disclosed events of achievements whose team got a reward
# this year. `unknown` counts those achievements whose disclosed event lists no inventors.
_PEOPLE = f"""
WITH rewarded AS (
    SELECT DISTINCT achievement_id FROM lifecycle_events
    WHERE {_IN_YEAR} AND {_PAYMENT}
      AND (payload->'distribution'->>'team_reward')::numeric > 0
), disclosed AS (
    SELECT r.achievement_id, d.payload->'inventors' AS inventors
    FROM rewarded r
    LEFT JOIN lifecycle_events d ON d.achievement_id = r.achievement_id AND d.type = 'disclosed'
)
SELECT
    count(*) FILTER (WHERE jsonb_typeof(inventors) IS DISTINCT FROM 'array') AS unknown,
    (SELECT count(DISTINCT person->>'name') FROM disclosed, jsonb_array_elements(
        CASE WHEN jsonb_typeof(inventors) = 'array' THEN inventors ELSE '[]'::jsonb END
    ) AS person) AS people
FROM disclosed
"""

# Institutions with any event in the year: each files a report for it.
_ACTIVE = """
SELECT i.institution_code FROM (SELECT DISTINCT institution_code FROM achievements) i
WHERE EXISTS (
    SELECT 1 FROM lifecycle_events e WHERE e.institution_code = i.institution_code
      AND e.occurred_at >= $1 AND e.occurred_at < $2)
ORDER BY 1
"""


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def _money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(CENT)


async def active_institutions(pool: asyncpg.Pool, year: int) -> list[str]:
    rows = await pool.fetch(_ACTIVE, *year_bounds(year))
    return [r["institution_code"] for r in rows]


async def build_institution_report(
    pool: asyncpg.Pool, institution: str, year: int, generated_at: datetime
) -> InstitutionAnnualReport:
    args = (institution, *year_bounds(year))
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            t = await conn.fetchrow(_TOTALS, *args)
            contracts = await conn.fetch(_CONTRACTS, *args)
            months = await conn.fetch(_MONTHS, *args)
            funnel = await conn.fetch(_FUNNEL, *args)
            disclosed = await conn.fetch(_DISCLOSED, *args)
            people = await conn.fetchrow(_PEOPLE, *args)
    assert t is not None and people is not None

    by_type = {kind: CountAmount() for kind in CONTRACT_TYPES}
    verified = Decimal(0)
    for r in contracts:
        by_type[r["contract_type"]] = CountAmount(count=r["n"], amount=_money(r["amount"]))
        verified += r["verified"] or 0
    by_month = [Decimal("0.00")] * 12
    for r in months:
        by_month[r["month"] - 1] = _money(r["cash"])
    stages = {r["stage"]: r["n"] for r in funnel}
    dims: dict[str, dict[str, int]] = {"field": {}, "funding": {}, "total": {}}
    for r in disclosed:
        dims[r["dim"]][r["key"]] = r["n"]

    return InstitutionAnnualReport(
        institution_code=institution,
        year=year,
        generated_at=generated_at,
        events_in_year=t["events"],
        achievements=AchievementsPart(
            disclosed=dims["total"].get("", 0),
            by_field=dict(sorted(dims["field"].items())),
            by_funding_kind=dict(sorted(dims["funding"].items())),
        ),
        deals=DealsPart(
            transfers=by_type["transfer"],
            licences=by_type["licence"],
            equity_investments=CountAmount(count=t["equity"], amount=_money(t["equity_held"])),
        ),
        contracts=ContractsPart(
            by_type=by_type,
            total=CountAmount(
                count=sum(c.count for c in by_type.values()),
                amount=sum((c.amount for c in by_type.values()), Decimal("0.00")),
            ),
            verified_total=_money(verified),
        ),
        income=IncomePart(
            payments=t["payments"],
            cash_received=_money(t["cash"]),
            costs=_money(t["costs"]),
            net_income=_money(t["net"]),
            team_reward=_money(t["team"]),
            tto_fund=_money(t["tto"]),
            institution=_money(t["inst"]),
            by_month=by_month,
        ),
        rewards=RewardsPart(
            rewards_paid=_money(t["team"]),
            teams_rewarded=t["teams"],
            people_rewarded=people["people"] if people["unknown"] == 0 else None,
        ),
        companies=CompaniesPart(
            companies_created=t["companies"],
            equity_registered=t["equity"],
            state_owned_equity=t["state_owned"],
            equity_held=_money(t["equity_held"]),
        ),
        funnel={stage: stages.get(stage, 0) for stage in FUNNEL_STAGES},
    )


async def build_reports(
    pool: asyncpg.Pool, year: int, institution: str | None, generated_at: datetime
) -> list[InstitutionAnnualReport]:
    """What `achievements report` prints: one report per institution (or just the one)."""
    codes = [institution] if institution else await active_institutions(pool, year)
    return [await build_institution_report(pool, code, year, generated_at) for code in codes]


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
    for name in ("costs", "net_income", "team_reward", "tto_fund", "institution"):
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
