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

from cli.gateway_client import call
from schemas.read_models import AchievementFilter, AchievementPage


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
    `http` carries the gateway's base URL and the caller's Authorization header.
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


def fetch_report(
    gateway: str | None, year: int, institution: str | None, fmt: str, lang: str = "zh"
) -> bytes:
    """The annual report as the gateway renders it for the caller (the scheduled one's code):
    text in UTF-8, or the PDF's bytes."""
    params = {"format": fmt, "lang": lang, **({"institution": institution} if institution else {})}
    _, response = call(gateway, "GET", f"/reports/annual/{year}", params=params)
    return response.content
