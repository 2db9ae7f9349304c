"""The transfer fund's activities: a lifecycle's accrual delivered to its institution's fund
(signal-with-start), and the fund's entries written to the PostgreSQL ledger; and the ledger's
reads for the gateway."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from temporalio import activity

from schemas.fund import FundAccrual, FundEntry, FundState, FundView
from schemas.jurisdiction import JURISDICTIONS
from workflows.ids import fund_workflow_id

log = structlog.get_logger(__name__)

# Names of the fund workflow's parts; workflows/transfer_fund.py imports this module, so the
# names are written here rather than imported from there.
FUND_WORKFLOW = "TransferFund"
ACCRUE_SIGNAL = "accrue"

_INSERT = """
INSERT INTO fund_entries (entry_id, institution_code, kind, amount, balance_after,
    achievement_id, payment_event_id, purpose, approver, actor, occurred_at, business_at,
    business_date)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[],
    $12::timestamptz[], $13::date[])
ON CONFLICT (institution_code, entry_id) DO NOTHING
"""

_COLUMNS = (
    "entry_id, institution_code AS institution, kind, amount, balance_after, achievement_id, "
    "payment_event_id, purpose, approver, actor, occurred_at, business_at"
)


class FundActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="fund.accrue")
    async def accrue(self, accrual: FundAccrual, jurisdiction: str) -> None:
        """Deliver the accrual to the institution's fund, starting the fund if it is new.
        A retry delivers it again; the fund records each payment's key once."""
        info = activity.info()
        await activity.client().start_workflow(
            FUND_WORKFLOW,
            FundState(institution=accrual.institution, jurisdiction=jurisdiction),
            id=fund_workflow_id(accrual.institution),
            task_queue=info.task_queue,
            start_signal=ACCRUE_SIGNAL,
            start_signal_args=[accrual],
        )
        log.info(
            "fund_accrual_sent",
            institution=accrual.institution,
            achievement_id=accrual.achievement_id,
            workflow_id=info.workflow_id,
            key=accrual.key,
        )

    @activity.defn(name="fund.record_entries")
    async def record_entries(self, entries: list[FundEntry], jurisdiction: str) -> int:
        """Write the entries to the ledger, each once; how many were new."""
        zone = ZoneInfo(JURISDICTIONS[jurisdiction].time_zone)
        columns = list(zip(*(_row(e, zone) for e in entries), strict=True)) if entries else []
        if not columns:
            return 0
        status: str = await self._pool.execute(_INSERT, *(list(c) for c in columns))
        written = int(status.rsplit(" ", 1)[-1])
        log.info(
            "fund_entries_recorded",
            institution=entries[0].institution,
            workflow_id=activity.info().workflow_id,
            written=written,
            entries=len(entries),
        )
        return written


def _row(e: FundEntry, zone: ZoneInfo) -> tuple[object, ...]:
    return (
        e.entry_id,
        e.institution,
        e.kind.value,
        e.amount,
        e.balance_after,
        e.achievement_id,
        e.payment_event_id,
        e.purpose,
        e.approver,
        e.actor,
        e.occurred_at,
        e.business_at,
        e.business_at.astimezone(zone).date(),
    )


async def fund_view(pool: asyncpg.Pool, institution: str, limit: int = 100) -> FundView:
    """The institution's ledger as projected: sums over every entry, the latest `limit` ones."""
    totals = await pool.fetchrow(
        "SELECT coalesce(sum(amount) FILTER (WHERE kind = 'accrual'), 0) AS accrued,"
        " coalesce(sum(amount) FILTER (WHERE kind = 'use'), 0) AS used"
        " FROM fund_entries WHERE institution_code = $1",
        institution,
    )
    assert totals is not None  # an aggregate always has a row
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM fund_entries WHERE institution_code = $1"
        " ORDER BY seq DESC LIMIT $2",
        institution,
        limit,
    )
    accrued, used = Decimal(totals["accrued"]), Decimal(totals["used"])
    return FundView(
        institution=institution,
        balance=accrued - used,
        accrued=accrued,
        used=used,
        entries=[FundEntry.model_validate(dict(r)) for r in rows],
    )
