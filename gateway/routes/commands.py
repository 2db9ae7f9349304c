"""People's commands on an achievement, as Temporal updates: a validator's refusal is a 409.

Who acts is the token's subject, written into the command's identity field and recorded as
its actor; the request bodies have no identity field to disagree with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException

from gateway.dependencies import (
    AuthenticatedRoute,
    Context,
    GatewayContext,
    authorized,
)
from gateway.errors import AUTHENTICATED, WITH_BODY, responses
from gateway.lifecycles import NOT_FOUND
from gateway.permissions import Grant, Operation
from gateway.routes.achievements import AchievementIdPath
from schemas.commands import Activation, MandatoryListingExemption, Withdrawal
from schemas.evaluation import OperatorDecision, Review
from schemas.gateway_api import (
    ActivationRequest,
    DecisionRequest,
    ExemptionRequest,
    GoNoGoRequest,
    ReviewRequest,
    UpdateResult,
    WithdrawalRequest,
)
from schemas.proof_of_concept import GoNoGo
from workflows.ids import poc_workflow_id
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept

log = structlog.get_logger(__name__)
router = APIRouter(tags=["commands"], route_class=AuthenticatedRoute)

UPDATE_RESPONSES = responses(*AUTHENTICATED, *WITH_BODY, 403, 404, 409, 504)


async def _update(
    ctx: GatewayContext,
    access: Grant,
    achievement_id: str,
    name: str,
    fn: Callable[[Any, Grant], Awaitable[Any]],
) -> UpdateResult:
    """Tenancy first (404 for what the caller may not see), then the workflow's own rules;
    `fn` gets the handle and the grant of the role that reaches this achievement."""
    facts = await ctx.lifecycles.facts(achievement_id)
    reached = access.on(facts.institution, list(facts.panel))
    if reached is None:
        raise HTTPException(404, NOT_FOUND)
    access = reached
    handle = ctx.lifecycles.handle(achievement_id)
    log.info(
        "update",
        update=name,
        achievement_id=achievement_id,
        workflow_id=handle.id,
        actor=access.actor.label,
    )
    result = await ctx.lifecycles.call(handle.id, "achievement", lambda: fn(handle, access))
    return UpdateResult(achievement_id=achievement_id, result=result)


@router.post(
    "/achievements/{achievement_id}/reviews",
    summary="An assigned expert submits their scored review (the reviewer is the token's subject)",
    response_model=UpdateResult,
    responses=UPDATE_RESPONSES,
)
async def submit_review(
    achievement_id: AchievementIdPath,
    body: ReviewRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.REVIEW))],
) -> UpdateResult:
    # Built only past the tenancy check: a subject on the panel is a valid reviewer id (panels
    # are validated), one that is not is a 404 there, never a 500 here.
    def review(g: Grant) -> Review:
        return Review(**body.model_dump(), reviewer_id=g.principal.subject, actor=g.actor)

    return await _update(
        ctx,
        access,
        achievement_id,
        "submit_review",
        lambda h, g: h.execute_update(AchievementLifecycle.submit_review, review(g)),
    )


@router.post(
    "/achievements/{achievement_id}/decision",
    summary="An institution officer routes the achievement (e.g. after a review escalation)",
    response_model=UpdateResult,
    responses=UPDATE_RESPONSES,
)
async def decide(
    achievement_id: AchievementIdPath,
    body: DecisionRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.DECIDE))],
) -> UpdateResult:
    return await _update(
        ctx,
        access,
        achievement_id,
        "decide",
        lambda h, g: h.execute_update(
            AchievementLifecycle.decide,
            OperatorDecision(**body.model_dump(), decided_by=g.principal.subject, actor=g.actor),
        ),
    )


@router.post(
    "/achievements/{achievement_id}/activate",
    summary="An institution officer activates a dormant scientific resource with its modes",
    response_model=UpdateResult,
    responses=UPDATE_RESPONSES,
)
async def activate(
    achievement_id: AchievementIdPath,
    body: ActivationRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.ACTIVATE))],
) -> UpdateResult:
    return await _update(
        ctx,
        access,
        achievement_id,
        "activate",
        lambda h, g: h.execute_update(
            AchievementLifecycle.activate,
            Activation(**body.model_dump(), activated_by=g.principal.subject, actor=g.actor),
        ),
    )


@router.post(
    "/achievements/{achievement_id}/withdraw",
    summary="An institution officer withdraws or abandons the achievement, with a reason",
    response_model=UpdateResult,
    responses=UPDATE_RESPONSES,
)
async def withdraw(
    achievement_id: AchievementIdPath,
    body: WithdrawalRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.WITHDRAW))],
) -> UpdateResult:
    return await _update(
        ctx,
        access,
        achievement_id,
        "withdraw",
        lambda h, g: h.execute_update(
            AchievementLifecycle.withdraw,
            Withdrawal(**body.model_dump(), requested_by=g.principal.subject, actor=g.actor),
        ),
    )


@router.post(
    "/achievements/{achievement_id}/exemption",
    summary="An approver exempts the achievement from mandatory listing, with a justification",
    response_model=UpdateResult,
    responses=UPDATE_RESPONSES,
)
async def exempt(
    achievement_id: AchievementIdPath,
    body: ExemptionRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.EXEMPT))],
) -> UpdateResult:
    return await _update(
        ctx,
        access,
        achievement_id,
        "exempt_mandatory_listing",
        lambda h, g: h.execute_update(
            AchievementLifecycle.exempt_mandatory_listing,
            MandatoryListingExemption(
                **body.model_dump(), approved_by=g.principal.subject, actor=g.actor
            ),
        ),
    )


@router.post(
    "/achievements/{achievement_id}/poc/decision",
    summary="The proof-of-concept fund records the go/no-go gate",
    response_model=UpdateResult,
    responses=UPDATE_RESPONSES,
)
async def go_no_go(
    achievement_id: AchievementIdPath,
    body: GoNoGoRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.GO_NO_GO))],
) -> UpdateResult:
    decision = GoNoGo(**body.model_dump(), decided_by=access.principal.subject, actor=access.actor)
    wid = poc_workflow_id(achievement_id)
    handle = ctx.lifecycles.poc_handle(achievement_id)
    log.info(
        "update",
        update="go_no_go",
        achievement_id=achievement_id,
        workflow_id=wid,
        actor=access.actor.label,
    )
    try:
        result = await ctx.lifecycles.call(
            wid,
            "proof of concept",
            lambda: handle.execute_update(ProofOfConcept.go_no_go, decision),
        )
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        # The fund reaches achievements in proof of concept only: no running PoC, nothing here.
        raise HTTPException(404, "no proof of concept running for this achievement") from None
    return UpdateResult(achievement_id=achievement_id, result=result)
