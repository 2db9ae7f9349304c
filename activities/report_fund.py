"""The transfer fund's year for the annual report: sums over the ledger (fund_entries) by
business date, the date on the jurisdiction's calendar written with each entry."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.report_fund import FundUseByPurpose, FundYear

_TOTALS = """
SELECT
    coalesce(sum(CASE kind WHEN 'accrual' THEN amount ELSE -amount END)
        FILTER (WHERE business_date < $2), 0) AS opening,
    count(*) FILTER (WHERE kind = 'accrual' AND business_date >= $2) AS accruals,
    coalesce(sum(amount) FILTER (WHERE kind = 'accrual' AND business_date >= $2), 0) AS accrued,
    count(*) FILTER (WHERE kind = 'use' AND business_date >= $2) AS uses,
    coalesce(sum(amount) FILTER (WHERE kind = 'use' AND business_date >= $2), 0) AS used
FROM fund_entries
WHERE institution_code = $1 AND business_date < $3
"""

_BY_PURPOSE = """
SELECT purpose, count(*) AS uses, sum(amount) AS amount
FROM fund_entries
WHERE institution_code = $1 AND kind = 'use' AND business_date >= $2 AND business_date < $3
GROUP BY purpose
ORDER BY sum(amount) DESC, purpose
"""


async def fund_year(
    pool: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy, institution: str, year: int
) -> FundYear:
    """The fund's year of one institution: its opening balance, accruals, uses by purpose and
    closing balance. Entries count on their business date (a payment's, a use's approval).
    On a connection, read in the caller's transaction (the annual report's snapshot)."""
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    totals = await pool.fetchrow(_TOTALS, institution, start, end)
    assert totals is not None  # an aggregate always has a row
    rows = await pool.fetch(_BY_PURPOSE, institution, start, end)
    opening, accrued, used = (Decimal(totals[k]) for k in ("opening", "accrued", "used"))
    return FundYear(
        institution=institution,
        year=year,
        opening_balance=opening,
        accruals=totals["accruals"],
        accrued=accrued,
        uses=totals["uses"],
        used=used,
        closing_balance=opening + accrued - used,
        by_purpose=[
            FundUseByPurpose(purpose=r["purpose"], uses=r["uses"], amount=r["amount"]) for r in rows
        ],
    )
