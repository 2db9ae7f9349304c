"""The operator overview: lifecycles per stage, and what is overdue or needs a person.

Read-only, from the PostgreSQL projection, scoped like every read: an institution's officers
and approvers see their own, the regulator every institution (or one, with `institution`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from activities.overview import read_overview
from gateway.dependencies import AuthenticatedRoute, Context, authorized
from gateway.errors import AUTHENTICATED, responses
from gateway.overview_page import CSP, render_overview
from gateway.permissions import Grant, Operation
from gateway.routes.reads import INSTITUTION_PATTERN
from schemas.overview import Overview

router = APIRouter(tags=["reads"], route_class=AuthenticatedRoute)


@router.get(
    "/overview",
    summary="The operator overview: lifecycles per stage, and what is overdue or needs a "
    "person, oldest first, each with its next action and Temporal UI link (HTML or JSON)",
    responses={
        200: {"model": Overview, "content": {"text/html": {}}},
        **responses(*AUTHENTICATED, 403),
    },
    response_model=None,
)
async def overview(
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.OVERVIEW))],
    institution: Annotated[
        str | None, Query(pattern=INSTITUTION_PATTERN, description="The regulator's filter")
    ] = None,
    format: Literal["html", "json"] = "html",
) -> Response:
    own, now = access.institution, datetime.now(UTC)
    if own is not None and institution not in (None, own):
        # Another institution's lifecycles do not exist for its officers: nothing, not 403.
        result = Overview(
            generated_at=now, institution=institution, stages=[], attention=[], more_attention=False
        )
    else:
        result = await read_overview(ctx.need_pool(), now, own or institution)
        rows = [
            r.model_copy(update={"ui_url": ctx.lifecycles.ui_url(r.workflow_id)})
            for r in result.attention
        ]
        result = result.model_copy(update={"attention": rows})
    if format == "json":
        return Response(result.model_dump_json(), media_type="application/json")
    return HTMLResponse(render_overview(result), headers={"Content-Security-Policy": CSP})
