"""Disclose an achievement, read one, and say who the caller is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities import queries
from gateway.dependencies import (
    AuthenticatedRoute,
    Context,
    authenticated,
    authorized,
)
from gateway.errors import AUTHENTICATED, WITH_BODY, responses
from gateway.lifecycles import NOT_FOUND
from gateway.permissions import PERMISSIONS, SEES_SUMMARY, Grant, Operation, Scope
from gateway.tokens import Principal
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN
from schemas.evaluation_institution import chosen_evaluator
from schemas.gateway_api import (
    AchievementBrief,
    AchievementState,
    ArchivedAchievement,
    DisclosureRequest,
    Me,
    Started,
)
from schemas.lifecycle import LifecycleInput, Stage
from workflows.ids import workflow_id
from workflows.start import start_lifecycle

log = structlog.get_logger(__name__)
router = APIRouter(tags=["achievements"], route_class=AuthenticatedRoute)

AchievementIdPath = Annotated[str, Path(pattern=ACHIEVEMENT_ID_PATTERN)]


@router.post(
    "/achievements",
    summary="Disclose an achievement of the caller's institution and start its lifecycle",
    status_code=201,
    response_model=Started,
    responses={
        200: {"model": Started, "description": "The same disclosure again: nothing started"},
        **responses(*AUTHENTICATED, *WITH_BODY, 403, 409),
    },
)
async def disclose(
    request: DisclosureRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.DISCLOSE))],
) -> Any:
    d = request.disclosure
    if d.institution.code != access.principal.institution:
        raise HTTPException(
            403,
            f"an officer of {access.principal.institution} may disclose for that institution"
            f" only, not for {d.institution.code}",
        )
    policy = ctx.policy_book.current(d.institution.code)
    evaluator = chosen_evaluator(request.evaluation, policy.evaluation_institutions, d.field)
    # Plan item 6: a panel is needed only when the panel evaluates.
    if evaluator is None and len(request.reviewers) < policy.reviewer_count:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "reviewers"),
                    "msg": f"the policy ({policy.version}) needs a panel of at least "
                    f"{policy.reviewer_count} experts, got {len(request.reviewers)}",
                }
            ]
        )
    wid = workflow_id(d.achievement_id)
    bound = log.bind(achievement_id=d.achievement_id, workflow_id=wid)
    actor = access.actor
    lifecycles = ctx.lifecycles
    try:
        handle = await start_lifecycle(
            lifecycles.client,
            LifecycleInput(
                disclosure=d,
                policy=policy,
                disclosed_at=datetime.now(UTC),
                disclosed_by=actor.subject,
                discloser=actor,
                reviewers=request.reviewers,
                exchanges=request.exchanges,
                asking_price=request.asking_price,
                pricing=request.pricing,
                evaluation=request.evaluation,
            ),
            ctx.settings.task_queue,
        )
    except WorkflowAlreadyStartedError as exc:
        state = await lifecycles.state(d.achievement_id)
        if state.disclosure.institution.code != access.principal.institution:
            # Another institution's id: say no more than that the id is taken.
            raise HTTPException(409, "this achievement id is taken; choose another") from None
        if state.disclosure != d:
            bound.info("disclosure conflicts with the existing one")
            return JSONResponse(
                status_code=409,
                content={
                    "detail": f"achievement {d.achievement_id} was already disclosed"
                    " with different content",
                    "field": "disclosure.achievement_id",
                },
            )
        run_id = exc.run_id or (await lifecycles.handle(d.achievement_id).describe()).run_id
        bound.info("duplicate disclosure acknowledged", run_id=run_id)
        body = Started(
            achievement_id=d.achievement_id,
            workflow_id=wid,
            run_id=run_id,
            policy_version=state.policy.version,
            duplicate=True,
        )
        return JSONResponse(status_code=200, content=body.model_dump(mode="json"))
    run_id = handle.result_run_id or ""
    bound.info("lifecycle started", run_id=run_id, policy_version=policy.version)
    return Started(
        achievement_id=d.achievement_id,
        workflow_id=wid,
        run_id=run_id,
        policy_version=policy.version,
    )


@router.get(
    "/achievements/{achievement_id}",
    summary="An achievement's state: whole for its institution and the regulator; a brief "
    "for its assigned experts and the proof-of-concept fund",
    response_model=AchievementState | AchievementBrief | ArchivedAchievement,
    responses=responses(*AUTHENTICATED, 403, 404),
)
async def get_state(
    achievement_id: AchievementIdPath,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.READ))],
) -> AchievementState | AchievementBrief | ArchivedAchievement:
    try:
        state = await ctx.lifecycles.state(achievement_id)
    except HTTPException as exc:
        if exc.status_code != 404 or ctx.pool is None:
            raise
        # No workflow: maybe one the namespace's retention deleted after it closed.
        return await _archived(ctx.pool, access, achievement_id)
    institution = state.disclosure.institution.code
    # The fund reaches a running proof of concept, and one that has ended (its outcome).
    in_poc = state.stage is Stage.PROOF_OF_CONCEPT or state.poc is not None
    reached = access.on(institution, state.reviewers, in_poc=in_poc)
    if reached is None:
        raise HTTPException(404, NOT_FOUND)
    access = reached
    if access.scope in (Scope.OWN, Scope.ANY):
        return AchievementState(**dict(state), ui_url=ctx.lifecycles.ui_url(state.workflow_id))
    d = state.disclosure
    mine = [r for r in state.reviews if r.reviewer_id == access.principal.subject]
    return AchievementBrief(
        achievement_id=state.achievement_id,
        institution_code=institution,
        title=d.title,
        field=d.field.value,
        trl=d.trl,
        stage=state.stage.value,
        summary=d.summary if access.scope in SEES_SUMMARY else None,
        waiting=state.waiting,
        my_review=mine[0] if mine else None,
        poc=state.poc if access.scope is Scope.POC else None,
    )


async def _archived(pool: asyncpg.Pool, access: Grant, achievement_id: str) -> ArchivedAchievement:
    """A closed lifecycle past retention, from PostgreSQL: its institution and the regulator
    read it; an expert's or the fund's part ended with the lifecycle, so for them it is gone."""
    record = await queries.achievement_record(pool, achievement_id)
    if record is None:
        raise HTTPException(404, NOT_FOUND)
    view, events = record
    reached = access.on(view.institution_code, view.panel)
    if reached is None or reached.scope not in (Scope.OWN, Scope.ANY):
        raise HTTPException(404, NOT_FOUND)
    log.info("read from the archive", achievement_id=achievement_id, stage=view.stage)
    return ArchivedAchievement(achievement_id=achievement_id, achievement=view, timeline=events)


@router.get(
    "/me",
    summary="Who the bearer token says the caller is, and what they may do (any valid token)",
    response_model=Me,
    responses=responses(*AUTHENTICATED),
)
async def whoami(principal: Annotated[Principal, Depends(authenticated)]) -> Me:
    may = {}
    for op, scopes in PERMISSIONS.items():
        held = [scopes[r] for r in principal.roles if r in scopes]
        if held:
            may[op.value] = ", ".join(sorted(s.value for s in held))
    return Me(
        subject=principal.subject,
        name=principal.name,
        institution=principal.institution,
        roles=sorted(r.value for r in principal.roles),
        may=may,
    )
