"""Brokered deals and the team's equity in a year, from recorded lifecycle events (SQL).

The figures the annual report adds for plan items 2, 3, 6 and 7 (schemas/report_deals.py),
read in one REPEATABLE READ snapshot. Events count by their business date in the
jurisdiction's zone, with the same books-close rule as activities/reports.py: dated in the year
and recorded before its close, or dated earlier and recorded after the year before closed.
A deal is dated by when the lifecycle accepted it, a payment by paid_at, an equity registration
by when it was recorded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from schemas.jurisdiction import DEFAULT_JURISDICTION, JURISDICTIONS
from schemas.money import CENT
from schemas.report import books_close, report_zone, year_bounds
from schemas.report_deals import BrokerFigures, DealsAndEquityFigures, TeamEquityReward

log = structlog.get_logger(__name__)

_Conn = asyncpg.Connection | PoolConnectionProxy

# $1 start of the year, $2 start of the next, $3 the year's close, $4 the year before's close.
_PERIOD = (
    "((e.business_at >= $1 AND e.business_at < $2 AND e.occurred_at < $3)"
    " OR (e.business_at < $1 AND e.occurred_at >= $4 AND e.occurred_at < $3))"
)
# The broker of an accepted deal: $6 'transfer_institution' or 'technology_manager', $7 the
# key of its id ('code' or 'certificate_number').
_BROKER = "e.payload->'brokerage'->$6::text"

# Deals brokered and closed in the year. $5 the institution.
_DEALS = f"""
SELECT {_BROKER}->>$7::text AS id, max({_BROKER}->>'name') AS name, count(*) AS deals,
    sum((e.payload->>'amount')::numeric) AS amount,
    sum((e.payload->'brokerage'->>'service_fee')::numeric) AS fees_agreed
FROM lifecycle_events e
WHERE e.institution_code = $5 AND e.type = 'deal_closed' AND (e.payload->>'accepted')::boolean
  AND jsonb_typeof({_BROKER}) = 'object' AND {_PERIOD}
GROUP BY 1
"""

# Fees taken from the year's payments, by the broker of the deal each payment is of (the
# lifecycle's one accepted deal on that listing).
_FEES = f"""
SELECT {_BROKER}->>$7::text AS id, max({_BROKER}->>'name') AS name,
    sum((p.payload->'distribution'->>'service_fee')::numeric) AS fees_paid
FROM lifecycle_events p
JOIN lifecycle_events e ON e.achievement_id = p.achievement_id AND e.type = 'deal_closed'
    AND (e.payload->>'accepted')::boolean AND e.payload->>'listing_id' = p.payload->>'listing_id'
WHERE p.institution_code = $5 AND p.type = 'payment_received'
  AND jsonb_typeof({_BROKER}) = 'object' AND {_PERIOD.replace("e.", "p.")}
GROUP BY 1
"""

# Equity registrations that recorded the team's reward (team-equity-reward onwards).
_EQUITY = f"""
SELECT e.achievement_id, e.payload->>'equity_certificate' AS equity_certificate,
    (e.payload->>'equity_share')::numeric AS equity_share,
    (e.payload->>'team_equity_share')::numeric AS team_equity_share,
    (e.payload->>'team_reward_equity_share')::numeric AS team_reward_equity_share,
    (e.payload->>'team_reward_rate')::numeric AS team_reward_rate,
    (e.payload->>'registered_at')::timestamptz AS registered_at
FROM lifecycle_events e
WHERE e.institution_code = $5 AND e.type = 'equity_registered'
  AND e.payload ? 'team_reward_equity_share' AND {_PERIOD}
ORDER BY e.business_at, e.achievement_id
"""

_KINDS = {
    "transfer_institutions": ("transfer_institution", "code"),
    "technology_managers": ("technology_manager", "certificate_number"),
}


def _period(year: int, jurisdiction: str) -> tuple[datetime, datetime, datetime, datetime]:
    zone = report_zone(jurisdiction)
    start, end = year_bounds(year, jurisdiction)
    return start, end, books_close(year, zone), books_close(year - 1, zone)


def _money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(CENT)


async def _brokers(
    conn: _Conn, params: tuple[object, ...], kind: str, key: str
) -> list[BrokerFigures]:
    deals = {r["id"]: r for r in await conn.fetch(_DEALS, *params, kind, key)}
    fees = {r["id"]: r for r in await conn.fetch(_FEES, *params, kind, key)}
    out = []
    for broker in sorted(deals.keys() | fees.keys()):
        d, f = deals.get(broker), fees.get(broker)
        named = d if d is not None else f
        assert named is not None  # the broker came from one of them
        out.append(
            BrokerFigures(
                id=broker,
                name=named["name"],
                deals=d["deals"] if d else 0,
                amount=_money(d["amount"] if d else None),
                fees_agreed=_money(d["fees_agreed"] if d else None),
                fees_paid=_money(f["fees_paid"] if f else None),
            )
        )
    return out


async def build_deals_and_equity(
    pool: asyncpg.Pool, institution_code: str, year: int, jurisdiction: str = DEFAULT_JURISDICTION
) -> DealsAndEquityFigures:
    """One institution's brokered deals, fees and team equity rewards in a year."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return await deals_and_equity_in(conn, institution_code, year, jurisdiction)


async def deals_and_equity_in(
    conn: _Conn, institution_code: str, year: int, jurisdiction: str = DEFAULT_JURISDICTION
) -> DealsAndEquityFigures:
    """The same, read on a connection in a transaction of the caller's (the annual report's
    snapshot)."""
    params = (*_period(year, jurisdiction), institution_code)
    brokers = {
        part: await _brokers(conn, params, kind, key) for part, (kind, key) in _KINDS.items()
    }
    equity = [TeamEquityReward(**dict(r)) for r in await conn.fetch(_EQUITY, *params)]
    log.info(
        "deals and equity figures built",
        institution_code=institution_code,
        year=year,
        brokered_deals=sum(b.deals for b in brokers["transfer_institutions"]),
        team_equity_rewards=len(equity),
    )
    return DealsAndEquityFigures(
        institution_code=institution_code,
        year=year,
        time_zone=JURISDICTIONS[jurisdiction].time_zone,
        transfer_institutions=brokers["transfer_institutions"],
        technology_managers=brokers["technology_managers"],
        team_equity=equity,
    )
