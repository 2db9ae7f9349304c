"""Read models over the projections: the achievement list and the event feed.

The one place with their SQL, shared by the gateway and the command line. Both read
PostgreSQL, never Temporal visibility (eventually consistent, so unfit for lists).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from schemas.read_models import (
    AchievementFilter,
    AchievementPage,
    EventPage,
    FeedEvent,
    ListedAchievement,
)
from schemas.views import AchievementView

_LIST_COLUMNS = (
    "achievement_id, workflow_id, institution_code, title, field, stage, modes, funding_kinds,"
    " mandatory_listing_due, waiting_on, waiting_until, synthetic, updated_at, panel,"
    " needs_attention_since, attention_reason, next_action"
)


async def list_achievements(
    pool: asyncpg.Pool,
    where: AchievementFilter,
    now: datetime,
    limit: int = 50,
    cursor: str | None = None,
) -> AchievementPage:
    """One page in achievement_id order; keyset pagination, so pages never skip or repeat."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.stage is not None:
        clauses.append(f"stage = {arg(where.stage)}")
    if where.institution is not None:
        clauses.append(f"institution_code = {arg(where.institution)}")
    if where.field is not None:
        clauses.append(f"field = {arg(where.field)}")
    if where.mode is not None:
        clauses.append(f"modes @> ARRAY[{arg(where.mode)}]::text[]")
    if where.overdue is True:
        clauses.append(f"waiting_until < {arg(now)}")
    elif where.overdue is False:
        clauses.append(f"(waiting_until IS NULL OR waiting_until >= {arg(now)})")
    if where.mandatory_due_before is not None:
        clauses.append(f"mandatory_listing_due < {arg(where.mandatory_due_before)}")
    if where.needs_attention is True:
        # The same rows as the UI query `NeedsAttentionSince IS NOT NULL` and the overview's.
        clauses.append("needs_attention_since IS NOT NULL")
    elif where.needs_attention is False:
        clauses.append("needs_attention_since IS NULL")
    if where.panel_member is not None:
        clauses.append(f"panel @> ARRAY[{arg(where.panel_member)}]::text[]")
    if cursor is not None:
        clauses.append(f"achievement_id > {arg(cursor)}")
    sql = (
        f"SELECT {_LIST_COLUMNS} FROM achievements"
        f" {'WHERE ' + ' AND '.join(clauses) if clauses else ''}"
        f" ORDER BY achievement_id LIMIT {arg(limit + 1)}"
    )
    rows = await pool.fetch(sql, *args)
    items = [ListedAchievement.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return AchievementPage(items=items, next_cursor=items[-1].achievement_id if more else None)


async def events_after(
    pool: asyncpg.Pool, after: int = 0, limit: int = 100, institution: str | None = None
) -> EventPage:
    """Events with seq > after, in seq order; only one institution's when it is given.

    Resumable without gaps because appends are serialised (see projections.record_event):
    a row with a lower seq can never become visible after one with a higher seq.
    """
    rows = await pool.fetch(
        "SELECT seq, event_id, achievement_id, workflow_id, institution_code, type, stage,"
        " occurred_at, source, payload, actor FROM lifecycle_events"
        " WHERE seq > $1 AND ($3::text IS NULL OR institution_code = $3)"
        " ORDER BY seq LIMIT $2",
        after,
        limit,
        institution,
    )
    events = [FeedEvent.model_validate(dict(r)) for r in rows]
    return EventPage(events=events, next_after=events[-1].seq if events else after)


async def achievement_record(
    pool: asyncpg.Pool, achievement_id: str
) -> tuple[AchievementView, list[FeedEvent]] | None:
    """An achievement's current-state row and all its events, oldest first; None if unknown.

    What remains of a lifecycle once the namespace's retention has deleted its workflow.
    """
    row = await pool.fetchrow(
        f"SELECT {_LIST_COLUMNS} FROM achievements WHERE achievement_id = $1", achievement_id
    )
    if row is None:
        return None
    events = await pool.fetch(
        "SELECT seq, event_id, achievement_id, workflow_id, institution_code, type, stage,"
        " occurred_at, source, payload, actor FROM lifecycle_events"
        " WHERE achievement_id = $1 ORDER BY seq",
        achievement_id,
    )
    return (
        AchievementView.model_validate(dict(row)),
        [FeedEvent.model_validate(dict(e)) for e in events],
    )
