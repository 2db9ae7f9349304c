"""The annual report, built from recorded lifecycle events only (SQL aggregates).

One code path for the scheduled workflow (through ReportActivities) and for
`achievements report`. The figures of a report are read in one REPEATABLE READ snapshot,
so its parts agree with each other even while events keep arriving.

The year's events are read once, for every institution at once (or just the one): one grouped
pass sums the money figures per institution, type, month of a payment and contract type or
stage, and returns the achievements disclosed, entering a stage or rewarded, whose distinct
counts (funnel, teams) and IP assets by kind are taken here. Two small queries add the field
and funding of the disclosed achievements and whether the inventors of the rewarded ones are
known. In the same snapshot, per institution, activities/report_deals.py adds the brokered
deals and team equity and activities/report_fund.py the transfer fund's year (its ledger).
Rendering (HTML, PDF, CSV rows) is in activities/report/.

Events count by their business date (`business_at`, migration 0006: a payment's paid_at, a
contract's registered_at, a company's founded_at, otherwise when it occurred), in the
jurisdiction's zone: the year runs on China Standard Time, not UTC. A year's books close on
10 January of the next (schemas/report.py books_close): an event dated in the year counts in
it if the lifecycle recorded it (occurred_at) before the close; one recorded later is a
correction in the report of the year it was recorded in. So a closed year's report is the same
every time it is built, `generated_at` aside.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import MAX_PREC, Decimal, localcontext

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity

from activities.report_deals import deals_and_equity_in
from activities.report_fund import fund_year
from schemas.jurisdiction import DEFAULT_JURISDICTION, JURISDICTIONS
from schemas.money import CENT
from schemas.report import (
    CONTRACT_TYPES,
    FUNNEL_STAGES,
    AchievementsPart,
    CompaniesPart,
    ContractsPart,
    Correction,
    CountAmount,
    DealsPart,
    IncomePart,
    InstitutionAnnualReport,
    ListingsPart,
    PocPart,
    RewardsPart,
    books_close,
    report_zone,
)
from schemas.report import year_bounds as year_bounds  # where bench/ and callers import it

log = structlog.get_logger(__name__)

_Conn = asyncpg.Connection | PoolConnectionProxy

_PAYMENT = "payment_received"
_CONTRACT = "contract_registered"
_DISCLOSED = "disclosed"
_STAGE = "stage_entered"
_EQUITY = "equity_registered"

# The grouping keys besides institution and type. Migration 0006 keeps statistics on exactly
# these expressions: without them the planner expects a group per event and sorts the year.
# $5 is the reporting zone: a payment's month is its month in that zone.
_MONTH = (
    "CASE WHEN type = 'payment_received'"
    " THEN date_part('month', business_at AT TIME ZONE $5::text)::int END"
)
_KEY = (
    "CASE type WHEN 'contract_registered' THEN payload->>'contract_type'"
    " WHEN 'stage_entered' THEN payload->>'stage' END"
)

# The events of a report (see the module's docstring): $1 start of the year, $2 start of the next
# (in the reporting zone), $3 the year's close, $4 the year before's close. Dated in the year and
# recorded before its close; or dated earlier and recorded after the year before closed.
_IN_YEAR = "business_at >= $1 AND business_at < $2 AND occurred_at < $3"
_LATE = "business_at < $1 AND occurred_at >= $4 AND occurred_at < $3"
_PERIOD = f"(({_IN_YEAR}) OR ({_LATE}))"
# The year a late event belongs to; NULL for the report's own year.
_LATE_YEAR = (
    "CASE WHEN business_at < $1 THEN date_part('year', business_at AT TIME ZONE $5::text)::int END"
)

# $1-$5 as above, [$6 institution]. Amounts are JSON strings written by the workflow from
# Decimal, so numeric casts are exact. Each sum is filtered by type: a key of the same name in
# another event's payload is never read.
_FIGURES = f"""
SELECT institution_code, type, {_MONTH} AS month, {_KEY} AS key, {_LATE_YEAR} AS late_year,
    count(*) AS n,
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
    sum((payload->'distribution'->>'service_fee')::numeric)
        FILTER (WHERE type = 'payment_received') AS fee,
    count(*) FILTER (
        WHERE type = 'equity_registered' AND (payload->>'state_owned_equity')::boolean
    ) AS state_owned,
    count(*) FILTER (
        WHERE type = 'contract_registered' AND (payload->>'tax_preference_eligible')::boolean
    ) AS tax_n,
    sum((payload->>'amount')::numeric) FILTER (
        WHERE type = 'contract_registered' AND (payload->>'tax_preference_eligible')::boolean
    ) AS tax_amount,
    sum((payload->>'granted_amount')::numeric) FILTER (WHERE type = 'poc_funded') AS granted,
    -- The value of the equity the institution holds (not the team's part, item 3), each
    -- registration rounded half up to the cent.
    sum(round((payload->>'valuation')::numeric * ((payload->>'equity_share')::numeric
        - coalesce((payload->>'team_equity_share')::numeric, 0)) / 100, 2))
        FILTER (WHERE type = 'equity_registered') AS equity_held,
    -- The IP kinds of each disclosed event, as JSON text (counted in Python, in this one pass);
    -- one recorded before the kinds were lists "unrecorded".
    array_agg(CASE WHEN jsonb_typeof(payload->'ip_kinds') = 'array' THEN payload->>'ip_kinds'
                   ELSE '["unrecorded"]' END) FILTER (WHERE type = 'disclosed') AS ip_kinds,
    -- With repeats. count(DISTINCT) here would rule out a parallel, partial aggregation.
    array_agg(achievement_id) FILTER (
        WHERE type IN ('disclosed', 'stage_entered')
           OR (type = 'payment_received'
               AND (payload->'distribution'->>'team_reward')::numeric > 0)
    ) AS achievements
FROM lifecycle_events
WHERE {_PERIOD}"""
_FIGURES_GROUP = "\nGROUP BY 1, 2, 3, 4, 5"

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
# inventors: the first such payment ends the search. $1-$3 the year (the payments of its own
# figures, not its corrections), $4 the institutions.
_REWARDED = """
    SELECT p.achievement_id FROM lifecycle_events p
    WHERE p.institution_code = {code}
      AND p.business_at >= $1 AND p.business_at < $2 AND p.occurred_at < $3
      AND p.type = 'payment_received'
      AND (p.payload->'distribution'->>'team_reward')::numeric > 0"""
_INVENTORS_UNKNOWN = f"""
SELECT code, EXISTS ({_REWARDED.format(code="code")}
      AND NOT coalesce((
          SELECT bool_and(jsonb_typeof(d.payload->'inventors') IS NOT DISTINCT FROM 'array')
          FROM lifecycle_events d
          WHERE d.achievement_id = p.achievement_id AND d.type = 'disclosed'), false)
) AS unknown
FROM unnest($4::text[]) AS code
"""
# Asked only when every disclosed event of those achievements lists its inventors.
_PEOPLE = f"""
SELECT count(DISTINCT person->>'name')
FROM lifecycle_events d, jsonb_array_elements(d.payload->'inventors') AS person
WHERE d.type = 'disclosed' AND d.achievement_id IN ({_REWARDED.format(code="$4")})
"""

# Institutions with any event in the report (the year's or a correction): each files one.
_ACTIVE = f"""
SELECT i.institution_code FROM (SELECT DISTINCT institution_code FROM achievements) i
WHERE EXISTS (
    SELECT 1 FROM lifecycle_events e WHERE e.institution_code = i.institution_code
      AND {_PERIOD})
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


@dataclass(frozen=True)
class _Period:
    """The bounds of one year's report, as SQL parameters $1-$5."""

    year: int
    jurisdiction: str

    @property
    def time_zone(self) -> str:
        return JURISDICTIONS[self.jurisdiction].time_zone

    @property
    def closes_at(self) -> datetime:
        return books_close(self.year, report_zone(self.jurisdiction))

    def bounds(self) -> tuple[datetime, datetime, datetime, datetime]:
        """$1-$4: the year, its close and the close of the year before."""
        zone = report_zone(self.jurisdiction)
        start, end = year_bounds(self.year, self.jurisdiction)
        return start, end, books_close(self.year, zone), books_close(self.year - 1, zone)

    def params(self) -> tuple[datetime, datetime, datetime, datetime, str]:
        return (*self.bounds(), self.time_zone)


def _money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(CENT)


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    """Exact, whatever the digits: the default context rounds to 28."""
    with localcontext(prec=MAX_PREC):
        return sum((v for v in values if v is not None), Decimal(0))


async def active_institutions(
    pool: asyncpg.Pool, year: int, jurisdiction: str = DEFAULT_JURISDICTION
) -> list[str]:
    rows = await pool.fetch(_ACTIVE, *_Period(year, jurisdiction).bounds())
    return [r["institution_code"] for r in rows]


class _Events:
    """Rows of _FIGURES of one institution and year: its events in (type, month, key) groups."""

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

    def ip_kinds(self) -> dict[str, int]:
        """IP assets of the disclosed events by kind: one per asset (two patents count two)."""
        kinds: Counter[str] = Counter()
        for r in self.of(_DISCLOSED):
            for listed in r["ip_kinds"] or ():
                kinds.update(str(k) for k in json.loads(listed))
        return dict(sorted(kinds.items()))

    def funnel(self) -> dict[str, int]:
        """Distinct achievements entering each stage; being disclosed enters the first."""
        entered: dict[str | None, set[str]] = defaultdict(set)
        entered["disclosure"].update(self.achievements(_DISCLOSED))
        for r in self.of(_STAGE):
            entered[r["key"]].update(r["achievements"] or ())
        return {stage: len(entered[stage]) for stage in FUNNEL_STAGES}


@dataclass
class _Figures:
    """_FIGURES by institution: the report's own year, and the late events by their year."""

    year: dict[str, _Events]
    late: dict[str, dict[int, _Events]]


async def _figures(conn: _Conn, period: _Period, institution: str | None) -> _Figures:
    if institution is None:
        rows = await conn.fetch(_FIGURES + _FIGURES_GROUP, *period.params())
    else:
        sql = _FIGURES + " AND institution_code = $6" + _FIGURES_GROUP
        rows = await conn.fetch(sql, *period.params(), institution)
    own: dict[str, list[asyncpg.Record]] = defaultdict(list)
    late: dict[str, dict[int, list[asyncpg.Record]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["late_year"] is None:
            own[r["institution_code"]].append(r)
        else:
            late[r["institution_code"]][r["late_year"]].append(r)
    return _Figures(
        year={code: _Events(rs) for code, rs in own.items()},
        late={code: {y: _Events(rs) for y, rs in years.items()} for code, years in late.items()},
    )


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


async def _people(conn: _Conn, period: _Period, codes: list[str]) -> dict[str, int | None]:
    bounds = period.bounds()[:3]
    people: dict[str, int | None] = {}
    for r in await conn.fetch(_INVENTORS_UNKNOWN, *bounds, codes):
        known = not r["unknown"]
        people[r["code"]] = await conn.fetchval(_PEOPLE, *bounds, r["code"]) if known else None
    return people


def _equity_held(e: _Events) -> Decimal:
    return _money(e.total("equity_held", _EQUITY))


def _correction(year: int, e: _Events) -> Correction:
    contracts = e.of(_CONTRACT)
    return Correction(
        year=year,
        events=sum(r["n"] for r in e.rows),
        disclosed=e.count(_DISCLOSED),
        contracts=CountAmount(
            count=sum(r["n"] for r in contracts), amount=_money(e.total("amount", _CONTRACT))
        ),
        payments=e.count(_PAYMENT),
        cash_received=_money(e.total("amount")),
        costs=_money(e.total("costs")),
        net_income=_money(e.total("net")),
        team_reward=_money(e.total("team")),
        tto_fund=_money(e.total("tto")),
        institution=_money(e.total("inst")),
        companies_created=e.count("company_founded"),
        equity_registered=e.count(_EQUITY),
        equity_held=_equity_held(e),
    )


def _report(
    institution: str,
    period: _Period,
    generated_at: datetime,
    e: _Events,
    late: dict[int, _Events],
    dims: _Dims,
    people: int | None,
) -> InstitutionAnnualReport:
    by_type = {kind: CountAmount() for kind in CONTRACT_TYPES}
    for r in e.of(_CONTRACT):
        by_type[r["key"]] = CountAmount(count=r["n"], amount=_money(r["amount"]))
    by_month = [Decimal("0.00")] * 12
    for r in e.of(_PAYMENT):
        by_month[r["month"] - 1] = _money(r["amount"])
    equity_held = _equity_held(e)
    team = _money(e.total("team"))
    return InstitutionAnnualReport(
        institution_code=institution,
        year=period.year,
        generated_at=generated_at,
        time_zone=period.time_zone,
        closes_at=period.closes_at,
        events_in_year=sum(r["n"] for r in e.rows),
        achievements=AchievementsPart(
            disclosed=e.count(_DISCLOSED),
            by_field=dict(sorted(dims["field"].items())),
            by_funding_kind=dict(sorted(dims["funding"].items())),
            by_ownership=dict(sorted(dims["ownership"].items())),
            by_ip_kind=e.ip_kinds(),
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
            tax_preference_eligible=CountAmount(
                count=sum(r["tax_n"] for r in e.of(_CONTRACT)),
                amount=_money(e.total("tax_amount", _CONTRACT)),
            ),
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
            service_fees=_money(e.total("fee")),
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
        listings=ListingsPart(
            mandatory_triggered=e.count("mandatory_listing_triggered"),
            mandatory_exempted=e.count("mandatory_listing_exempted"),
        ),
        poc=PocPart(
            grants=e.count("poc_funded"), granted_amount=_money(e.total("granted", "poc_funded"))
        ),
        funnel=e.funnel(),
        corrections=[_correction(y, late[y]) for y in sorted(late)],
    )


async def _build(
    pool: asyncpg.Pool, period: _Period, institution: str | None, generated_at: datetime
) -> list[InstitutionAnnualReport]:
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(_SETTINGS)
            figures = await _figures(conn, period, institution)
            if institution is None:
                found = sorted(figures.year.keys() | figures.late.keys())
                codes = [r["code"] for r in await conn.fetch(_KNOWN, found)]
            else:
                codes = [institution]
            dims = await _fields(conn, figures.year)
            people = await _people(conn, period, codes)
            # Brokered deals and team equity (events), the transfer fund (its ledger): the
            # same year, books-close rule and calendar, in the same snapshot.
            brokered = {
                code: await deals_and_equity_in(conn, code, period.year, period.jurisdiction)
                for code in codes
            }
            funds = {code: await fund_year(conn, code, period.year) for code in codes}
    return [
        _report(
            code,
            period,
            generated_at,
            figures.year.get(code, _Events()),
            figures.late.get(code, {}),
            dims[code],
            people[code],
        ).model_copy(update={"brokered": brokered[code], "fund": funds[code]})
        for code in codes
    ]


async def build_institution_report(
    pool: asyncpg.Pool,
    institution: str,
    year: int,
    generated_at: datetime,
    jurisdiction: str = DEFAULT_JURISDICTION,
) -> InstitutionAnnualReport:
    [report] = await _build(pool, _Period(year, jurisdiction), institution, generated_at)
    return report


async def build_reports(
    pool: asyncpg.Pool,
    year: int,
    institution: str | None,
    generated_at: datetime,
    jurisdiction: str = DEFAULT_JURISDICTION,
) -> list[InstitutionAnnualReport]:
    """What `achievements report` prints: one report per institution (or just the one)."""
    return await _build(pool, _Period(year, jurisdiction), institution, generated_at)


class ReportActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # The jurisdiction comes last, with a default: a run scheduled before it was passed still
    # reports on the Shanghai calendar.
    @activity.defn(name="report.active_institutions")
    async def active_institutions(
        self, year: int, jurisdiction: str = DEFAULT_JURISDICTION
    ) -> list[str]:
        return await active_institutions(self._pool, year, jurisdiction)

    @activity.defn(name="report.build_institution_report")
    async def build_institution_report(
        self,
        institution: str,
        year: int,
        generated_at: datetime,
        jurisdiction: str = DEFAULT_JURISDICTION,
    ) -> InstitutionAnnualReport:
        report = await build_institution_report(
            self._pool, institution, year, generated_at, jurisdiction
        )
        log.info(
            "annual_report_built",
            institution_code=institution,
            year=year,
            events=report.events_in_year,
            workflow_id=activity.info().workflow_id,
        )
        return report
