"""Projections: lifecycle events appended to PostgreSQL, and the current-state row in step."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from schemas.events import LifecycleEvent
from schemas.views import AchievementView

log = structlog.get_logger(__name__)

# The append itself is a server-side function (migrations/0003_append_function.sql): one
# round trip per flush, in the statement's own transaction.
_APPEND = "SELECT append_lifecycle_events($1, $2)"


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
        appended: int = await self._pool.fetchval(
            _APPEND,
            [e.model_dump(mode="json") for e in events],
            view.model_dump(mode="json"),
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
