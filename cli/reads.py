"""The read side of the command line: list views, the event feed tail, the annual report.

All through the gateway with the caller's token, so each person reads exactly what the
gateway lets them: their institution's rows, an expert's panels, everything for a regulator.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import httpx
from rich.style import Style
from rich.table import Table
from rich.text import Text

from cli.gateway_client import call
from schemas.read_models import AchievementFilter, AchievementPage, ListedAchievement


class ReadError(Exception):
    """A clear, user-facing reason a read command cannot run."""


def list_page(
    gateway: str | None, where: AchievementFilter, limit: int, cursor: str | None
) -> AchievementPage:
    params: dict[str, Any] = {
        k: (str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in where.model_dump(exclude_none=True).items()
    }
    params["limit"] = limit
    if cursor:
        params["cursor"] = cursor
    _, response = call(gateway, "GET", "/achievements", params=params)
    return AchievementPage.model_validate(response.json())


def _moment(row_time: Any) -> str:
    return str(row_time.strftime("%Y-%m-%d %H:%M")) if row_time else ""


def _waiting(row: ListedAchievement) -> str:
    """What it waits for and by when, then whether a person must act, since when and why."""
    parts = []
    if row.waiting_on is not None:
        until = f" until {_moment(row.waiting_until)}" if row.waiting_until else ""
        parts.append(row.waiting_on + until)
    if row.needs_attention_since is not None:
        reason = f" ({row.attention_reason})" if row.attention_reason else ""
        parts.append(f"needs a person since {_moment(row.needs_attention_since)}{reason}")
    return "; ".join(parts)


def page_table(page: AchievementPage, links: bool = False) -> Table:
    """One page as a table. Ids are never cut (the other columns wrap instead); each id links
    to its Temporal UI page in terminals that show links, and `links` prints the URL too.
    Columns that would be empty on every row (one institution, no listing due) are left out."""
    rows = page.items
    table = Table()
    longest = max((len(r.achievement_id) for r in rows), default=11)
    table.add_column("achievement", no_wrap=True, min_width=longest)
    several = len({r.institution_code for r in rows}) > 1
    due = any(r.mandatory_listing_due for r in rows)
    if several:
        table.add_column("institution")
    table.add_column("stage")
    table.add_column("waiting for", ratio=1)
    if due:
        table.add_column("listing due")
    if links:
        table.add_column("Temporal UI", overflow="fold")
    for row in rows:
        link = Style(link=row.ui_url) if row.ui_url else Style()
        cells = [Text(row.achievement_id, style=link)]
        if several:
            cells.append(Text(row.institution_code))
        cells += [Text(row.stage), Text(_waiting(row))]  # Text: user data is never markup
        if due:
            cells.append(Text(str(row.mandatory_listing_due or "")))
        if links:
            cells.append(Text(row.ui_url or ""))
        table.add_row(*cells)
    return table


async def tail_events(
    http: httpx.AsyncClient,
    after: int,
    follow: bool,
    limit: int | None = None,
    poll_seconds: float = 2.0,
    out: TextIO | None = None,
    on_error: Callable[[str], None] | None = None,
    page_size: int = 100,
) -> int:
    """Print events after `after` as JSON lines; with follow, keep polling. Returns the cursor.

    `limit` stops after that many events in all (None: no end). The cursor is the seq of the
    last event printed, so `--after` it resumes exactly there. `http` carries the gateway's
    base URL and the caller's Authorization header.
    """
    out = out or sys.stdout  # looked up when called: whatever stdout is then (a redirect)
    printed = 0
    while True:
        size = page_size if limit is None else min(page_size, limit - printed)
        if size <= 0:
            return after
        try:
            response = await http.get("/events", params={"after": after, "limit": size})
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
        printed += len(page["events"])
        after = int(page["next_after"])
        if limit is not None and printed >= limit:
            return after
        if len(page["events"]) < size:
            if not follow:
                return after
            await asyncio.sleep(poll_seconds)


def fetch_report(
    gateway: str | None, year: int, institution: str | None, fmt: str, lang: str = "zh"
) -> bytes:
    """The annual report as the gateway renders it for the caller (the scheduled one's code):
    text in UTF-8, or the PDF's bytes."""
    params = {"format": fmt, "lang": lang, **({"institution": institution} if institution else {})}
    _, response = call(gateway, "GET", f"/reports/annual/{year}", params=params)
    return response.content
