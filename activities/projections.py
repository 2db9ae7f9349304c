"""Projections: lifecycle events appended to PostgreSQL, and the current-state row in step."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from schemas.events import LifecycleEvent
from schemas.views import AchievementView

log = structlog.get_logger(__name__)

# Any fixed number (distinct from the migration lock in store.py).
_APPEND_LOCK = 7_413_220_002

_APPEND = """
INSERT INTO lifecycle_events
    (event_id, achievement_id, workflow_id, institution_code, type, stage,
     occurred_at, source, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (event_id) DO NOTHING
RETURNING seq
"""

# Only a newer event moves the row: a late retry of an older event must not roll it back.
_UPSERT_VIEW = """
INSERT INTO achievements
    (achievement_id, workflow_id, institution_code, title, field, stage, modes, funding_kinds,
     mandatory_listing_due, waiting_on, waiting_until, synthetic, last_event_seq, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (achievement_id) DO UPDATE SET
    workflow_id = EXCLUDED.workflow_id, stage = EXCLUDED.stage, modes = EXCLUDED.modes,
    mandatory_listing_due = EXCLUDED.mandatory_listing_due, waiting_on = EXCLUDED.waiting_on,
    waiting_until = EXCLUDED.waiting_until, last_event_seq = EXCLUDED.last_event_seq,
    updated_at = EXCLUDED.updated_at
WHERE achievements.last_event_seq < EXCLUDED.last_event_seq
"""


class ProjectionActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="projection.record_event")
    async def record_event(self, event: LifecycleEvent, view: AchievementView) -> bool:
        """Append the event once; return False when it was already recorded (a retry).

        Kept for lifecycles recorded before record_events; new ones append in batches.
        """
        return await self.record_events([event], view) == 1

    @activity.defn(name="projection.record_events")
    async def record_events(self, events: list[LifecycleEvent], view: AchievementView) -> int:
        """Append the events in order, each once, and move the current-state row in step.

        One transaction, so a retry after a crash either finds all of them or none. Returns
        how many were new (0 for a complete retry).
        """
        last_seq: int | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            # Serialise appends until commit, so seq order is commit order: a feed reader
            # resuming after seq N can never miss a lower seq that committed later.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
            appended = 0
            for event in events:
                seq = await conn.fetchval(
                    _APPEND,
                    event.event_id,
                    event.achievement_id,
                    event.workflow_id,
                    event.institution_code,
                    event.type.value,
                    event.stage,
                    event.occurred_at,
                    event.source,
                    event.payload,
                )
                if seq is not None:
                    appended += 1
                    last_seq = seq
            if last_seq is not None:
                await conn.execute(
                    _UPSERT_VIEW,
                    view.achievement_id,
                    view.workflow_id,
                    view.institution_code,
                    view.title,
                    view.field,
                    view.stage,
                    view.modes,
                    view.funding_kinds,
                    view.mandatory_listing_due,
                    view.waiting_on,
                    view.waiting_until,
                    view.synthetic,
                    last_seq,
                    view.updated_at,
                )
        if events:
            log.debug(
                "events_recorded",
                achievement_id=view.achievement_id,
                workflow_id=view.workflow_id,
                run_id=activity.info().workflow_run_id,
                appended=appended,
                types=[e.type.value for e in events],
            )
        return appended
