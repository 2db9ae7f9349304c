"""Read views from the PostgreSQL projections (never Temporal visibility), scoped to the caller:
an institution sees its own, an expert their panels, the regulator everything.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Literal, cast

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from activities import queries
from activities.report_render import (
    DEFAULT_LANG,
    Lang,
    PdfUnavailable,
    check_pdf_support,
    to_csv,
    to_html,
    to_json,
    to_pdf,
)
from activities.reports import build_reports
from gateway.dependencies import AuthenticatedRoute, Context, authorized
from gateway.errors import AUTHENTICATED, ERRORS, responses
from gateway.permissions import Grant, Operation, Scope
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN, TechnologyField, TransformationMode
from schemas.lifecycle import Stage
from schemas.read_models import MAX_PAGE, AchievementFilter, AchievementPage, EventPage
from schemas.report import FIRST_YEAR, LAST_YEAR

log = structlog.get_logger(__name__)

MAX_FEED_PAGE = 1000
MAX_SEQ = 2**63 - 1  # lifecycle_events.seq is a PostgreSQL bigint
INSTITUTION_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,31}$"

router = APIRouter(tags=["reads"], route_class=AuthenticatedRoute)
READ_RESPONSES = responses(*AUTHENTICATED, 403)


class _Nothing(Exception):
    """The caller asked for another institution's rows, which do not exist for them."""


def _institution(access: Grant, asked: str | None) -> str | None:
    """The institution a read is limited to: the caller's own unless they reach all."""
    own = access.institution
    if own is None:
        return asked
    if asked is not None and asked != own:
        raise _Nothing
    return own


@router.get(
    "/achievements",
    summary="List the caller's achievements from the projections, in achievement_id order",
    response_model=AchievementPage,
    responses=READ_RESPONSES,
)
async def list_achievements(
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.LIST))],
    stage: Stage | None = None,
    institution: Annotated[str | None, Query(pattern=INSTITUTION_PATTERN)] = None,
    field: TechnologyField | None = None,
    mode: TransformationMode | None = None,
    overdue: Annotated[
        bool | None, Query(description="Waiting past its deadline (or not, when false)")
    ] = None,
    mandatory_due_before: Annotated[
        date | None, Query(description="Mandatory listing due strictly before this date")
    ] = None,
    needs_attention: Annotated[
        bool | None,
        Query(
            description="A person must act (or not, when false): the same rows as the UI "
            "query `NeedsAttentionSince IS NOT NULL` and the overview's"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=ACHIEVEMENT_ID_PATTERN, description="next_cursor")
    ] = None,
) -> AchievementPage:
    panel = access.scope is Scope.PANEL
    try:
        scoped = institution if panel else _institution(access, institution)
    except _Nothing:
        # Another institution's rows do not exist for this caller: an empty page, not 403.
        return AchievementPage(items=[], next_cursor=None)
    where = AchievementFilter(
        stage=stage.value if stage else None,
        institution=scoped,
        field=field.value if field else None,
        mode=mode.value if mode else None,
        overdue=overdue,
        mandatory_due_before=mandatory_due_before,
        needs_attention=needs_attention,
        panel_member=access.principal.subject if panel else None,
    )
    page = await queries.list_achievements(
        ctx.need_pool(), where, datetime.now(UTC), limit=limit, cursor=cursor
    )
    lifecycles = ctx.lifecycles
    items = [
        i.model_copy(
            update={
                "ui_url": lifecycles.ui_url(i.workflow_id),
                **({"panel": []} if panel else {}),  # an expert does not learn who else reviews
            }
        )
        for i in page.items
    ]
    return page.model_copy(update={"items": items})


@router.get(
    "/events",
    summary="The caller's lifecycle events in order, resumable: pass next_after as after",
    response_model=EventPage,
    responses=READ_RESPONSES,
)
async def events(
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.EVENTS))],
    # Bounded by seq's bigint: a larger number is a 422, not a 500 from PostgreSQL.
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="The last seq already seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_PAGE)] = 100,
) -> EventPage:
    return await queries.events_after(
        ctx.need_pool(), after=after, limit=limit, institution=access.institution
    )


# What a report's format is when ?format= is not given: the first of these the Accept header
# names, else JSON.
_ACCEPTED = (("application/pdf", "pdf"), ("text/html", "html"), ("text/csv", "csv"))
ReportFormat = Literal["json", "csv", "html", "pdf"]


def _negotiated(format: ReportFormat | None, accept: str | None) -> ReportFormat:
    if format is not None:
        return format
    accepted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    for media, fmt in _ACCEPTED:
        if media in accepted:
            return cast(ReportFormat, fmt)
    return "json"


@router.get(
    "/reports/annual/{year}",
    summary="The annual report (Safeguard 4) of the caller's institution, or of every "
    "institution for the regulator",
    description="JSON or CSV figures; HTML or PDF for filing, in Chinese (`lang=en`: English). "
    "Without `format`, the Accept header chooses (application/pdf, text/html, text/csv). "
    "503 when this server cannot print PDF: the detail names what to install.",
    responses={
        200: {
            "content": {
                "application/json": {},
                "text/csv": {},
                "text/html": {},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            }
        },
        **READ_RESPONSES,
        404: ERRORS[404],
    },
)
async def annual_report(
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.REPORT))],
    year: Annotated[int, Path(ge=FIRST_YEAR, le=LAST_YEAR)],
    institution: Annotated[str | None, Query(pattern=INSTITUTION_PATTERN)] = None,
    format: Annotated[
        ReportFormat | None, Query(description="Default: from the Accept header, else json")
    ] = None,
    lang: Annotated[Lang, Query(description="HTML and PDF: zh (Chinese) or en")] = DEFAULT_LANG,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    try:
        scoped = _institution(access, institution)
    except _Nothing:
        raise HTTPException(404, "no report of that institution for the caller") from None
    chosen = _negotiated(format, accept)
    if chosen == "pdf":
        try:  # before the figures: a server that cannot print says so at once
            check_pdf_support()
        except PdfUnavailable as exc:
            log.warning("annual_report_pdf_unavailable", year=year, reason=str(exc))
            raise HTTPException(503, str(exc)) from None
    reports = await build_reports(ctx.need_pool(), year, scoped, datetime.now(UTC))
    if chosen == "csv":
        return PlainTextResponse(to_csv(reports), media_type="text/csv")
    if chosen == "html":
        return HTMLResponse(to_html(reports, year, lang))
    if chosen == "pdf":
        pdf = await asyncio.to_thread(to_pdf, reports, year, lang)  # CPU-bound: off the loop
        name = f"annual-report-{year}{'-' + scoped if scoped else ''}-{lang}.pdf"
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{name}"'},
        )
    return Response(to_json(reports), media_type="application/json")
