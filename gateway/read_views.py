"""Read endpoints of the gateway: the achievement list and the lifecycle-event feed.

Served from the PostgreSQL projections (activities/queries.py), never from Temporal
visibility. Without a database pool they answer 503 rather than guess.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, HTTPException, Query

from activities import queries
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN, TechnologyField, TransformationMode
from schemas.lifecycle import Stage
from schemas.read_models import MAX_PAGE, AchievementFilter, AchievementPage, EventPage

NO_DATABASE = "list views need ACHIEVEMENTS_DATABASE_URL"
MAX_FEED_PAGE = 1000
MAX_SEQ = 2**63 - 1  # lifecycle_events.seq is a PostgreSQL bigint


def read_views_router(pool: asyncpg.Pool | None) -> APIRouter:
    router = APIRouter()

    def need_pool() -> asyncpg.Pool:
        if pool is None:
            raise HTTPException(503, NO_DATABASE)
        return pool

    @router.get(
        "/achievements",
        summary="List achievements from the projections, filtered, in achievement_id order",
        response_model=AchievementPage,
        responses={503: {"description": NO_DATABASE}},
    )
    async def list_achievements(
        stage: Stage | None = None,
        institution: Annotated[str | None, Query(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")] = None,
        field: TechnologyField | None = None,
        mode: TransformationMode | None = None,
        overdue: Annotated[
            bool | None, Query(description="Waiting past its deadline (or not, when false)")
        ] = None,
        mandatory_due_before: Annotated[
            date | None, Query(description="Mandatory listing due strictly before this date")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[
            str | None, Query(pattern=ACHIEVEMENT_ID_PATTERN, description="next_cursor")
        ] = None,
    ) -> AchievementPage:
        where = AchievementFilter(
            stage=stage.value if stage else None,
            institution=institution,
            field=field.value if field else None,
            mode=mode.value if mode else None,
            overdue=overdue,
            mandatory_due_before=mandatory_due_before,
        )
        return await queries.list_achievements(
            need_pool(), where, datetime.now(UTC), limit=limit, cursor=cursor
        )

    @router.get(
        "/events",
        summary="Lifecycle events in order, resumable: pass next_after as after",
        response_model=EventPage,
        responses={503: {"description": NO_DATABASE}},
    )
    async def events(
        # Bounded by seq's bigint: a larger number is a 422, not a 500 from PostgreSQL.
        after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="The last seq already seen")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_FEED_PAGE)] = 100,
    ) -> EventPage:
        return await queries.events_after(need_pool(), after=after, limit=limit)

    return router
