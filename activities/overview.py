"""The overview's figures from the projection, shared by the overview page and the metrics.

Cheap by design: one grouped count over `achievements` and one indexed, bounded scan of the
rows that are overdue or need a person. Closed lifecycles are counted but never need anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schemas.lifecycle import Stage
from schemas.overview import AttentionRow, Overview, StageCount

FINAL_STAGES = [s.value for s in Stage if s.is_final]
MAX_ATTENTION_ROWS = 500


@dataclass(frozen=True)
class Figures:
    """Lifecycles of one institution in one stage."""

    institution: str
    stage: str
    lifecycles: int
    overdue: int
    needs_person: int


async def figures(pool: asyncpg.Pool, now: datetime, institution: str | None) -> list[Figures]:
    """Per institution and stage: how many, how many overdue, how many need a person."""
    rows = await pool.fetch(
        "SELECT institution_code, stage, count(*) AS lifecycles,"
        " count(*) FILTER (WHERE waiting_until < $1 AND stage <> ALL($3::text[])) AS overdue,"
        " count(*) FILTER (WHERE needs_attention_since IS NOT NULL"
        "   AND stage <> ALL($3::text[])) AS needs_person"
        " FROM achievements WHERE ($2::text IS NULL OR institution_code = $2)"
        " GROUP BY institution_code, stage ORDER BY institution_code, stage",
        now,
        institution,
        FINAL_STAGES,
    )
    return [
        Figures(r["institution_code"], r["stage"], r["lifecycles"], r["overdue"], r["needs_person"])
        for r in rows
    ]


async def read_overview(
    pool: asyncpg.Pool, now: datetime, institution: str | None, limit: int = MAX_ATTENTION_ROWS
) -> Overview:
    """Counts per stage (in the lifecycle's order) and the rows needing attention, oldest
    first; ui_url is left for the gateway, which knows the UI and namespace."""
    per_stage: dict[str, StageCount] = {}
    for f in await figures(pool, now, institution):
        c = per_stage.setdefault(
            f.stage, StageCount(stage=f.stage, lifecycles=0, overdue=0, needs_person=0)
        )
        c.lifecycles += f.lifecycles
        c.overdue += f.overdue
        c.needs_person += f.needs_person
    order = [s.value for s in Stage]
    stages = sorted(
        per_stage.values(),
        key=lambda c: (order.index(c.stage) if c.stage in order else len(order), c.stage),
    )
    rows = await pool.fetch(
        "SELECT achievement_id, workflow_id, institution_code, title, stage, waiting_on,"
        " waiting_until, needs_attention_since, attention_reason, next_action,"
        " LEAST(needs_attention_since, CASE WHEN waiting_until < $1 THEN waiting_until END)"
        "   AS since"
        " FROM achievements"
        " WHERE (needs_attention_since IS NOT NULL OR waiting_until < $1)"
        " AND stage <> ALL($3::text[]) AND ($2::text IS NULL OR institution_code = $2)"
        " ORDER BY since, achievement_id LIMIT $4",
        now,
        institution,
        FINAL_STAGES,
        limit + 1,
    )
    attention = [
        AttentionRow(
            **{k: r[k] for k in r.keys()},
            overdue=r["waiting_until"] is not None and r["waiting_until"] < now,
        )
        for r in rows[:limit]
    ]
    return Overview(
        generated_at=now,
        institution=institution,
        stages=stages,
        attention=attention,
        more_attention=len(rows) > limit,
    )
