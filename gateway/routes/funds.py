"""The transfer fund of an institution (plan item 4): its ledger, and uses of it.

A use is asked by an officer of the institution and approved by one of its approvers: the
officer calls with their own token and presents the approver's token in `X-Approver-Token`
(both verified here, neither taken from the body); the approver must be another person. The
fund workflow then refuses a use above its balance, and answers a repeated request id as before.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.fund import fund_view
from gateway.dependencies import AuthenticatedRoute, Context, authorized
from gateway.errors import AUTHENTICATED, WITH_BODY, responses
from gateway.permissions import Grant, Operation
from gateway.tokens import InvalidToken, IssuerUnavailable
from schemas.fund import FundUse, FundUseRequest, FundUseResult, FundView
from schemas.identity import Actor, Role
from workflows.ids import fund_workflow_id
from workflows.transfer_fund import INSUFFICIENT_BALANCE, USE_UPDATE

log = structlog.get_logger(__name__)
router = APIRouter(tags=["funds"], route_class=AuthenticatedRoute)

InstitutionPath = Annotated[
    str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$", description="The institution's code")
]
NOT_FOUND = "no such fund"
APPROVER_HEADER = "X-Approver-Token"


def _reach(access: Grant, institution: str) -> Grant:
    reached = access.on(institution)
    if reached is None:
        raise HTTPException(404, NOT_FOUND)  # another institution's fund: as if none
    return reached


@router.get(
    "/funds/{institution}",
    summary="The transfer fund's balance and latest entries (accruals and uses)",
    response_model=FundView,
    responses=responses(*AUTHENTICATED, 403, 404),
)
async def read_fund(
    institution: InstitutionPath,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.FUND_READ))],
) -> FundView:
    _reach(access, institution)
    return await fund_view(ctx.need_pool(), institution)


async def _approver(ctx: Context, token: str | None, institution: str, officer: Actor) -> Actor:
    """The approver, from their own verified token: an approver of this institution, and not
    the officer."""
    if not token or not token.strip():
        raise RequestValidationError(
            [
                {
                    "loc": ("header", APPROVER_HEADER),
                    "msg": "the approver's access token is required",
                }
            ]
        )
    try:
        principal = await ctx.verifier.verify(token.removeprefix("Bearer ").strip())
    except InvalidToken as exc:
        log.info("approver token refused", reason=str(exc))
        raise HTTPException(403, f"{APPROVER_HEADER}: not a valid token ({exc})") from None
    except IssuerUnavailable:
        raise HTTPException(503, "the identity provider is unavailable") from None
    if not principal.holds(Role.APPROVER) or principal.institution != institution:
        raise HTTPException(403, f"{APPROVER_HEADER}: not an approver of {institution}")
    if principal.subject == officer.subject:
        raise HTTPException(403, f"{APPROVER_HEADER}: the approver must be another person")
    return Actor(
        subject=principal.subject,
        role=Role.APPROVER,
        institution=principal.institution,
        name=principal.name,
        client_id=principal.client_id,
    )


@router.post(
    "/funds/{institution}/uses",
    summary="An officer records a use of the fund, approved by an approver (X-Approver-Token)",
    response_model=FundUseResult,
    responses=responses(*AUTHENTICATED, *WITH_BODY, 403, 404, 504),
)
async def use_fund(
    institution: InstitutionPath,
    body: FundUseRequest,
    ctx: Context,
    access: Annotated[Grant, Depends(authorized(Operation.FUND_USE))],
    approver_token: Annotated[
        str | None,
        Header(
            alias=APPROVER_HEADER,
            description="The approving approver's own access token (they approve this use)",
        ),
    ] = None,
) -> FundUseResult:
    officer = _reach(access, institution).actor
    approver = await _approver(ctx, approver_token, institution, officer)
    use = FundUse(institution=institution, request=body, officer=officer, approver=approver)
    wid = fund_workflow_id(institution)
    log.info(
        "fund_use",
        workflow_id=wid,
        request_id=body.request_id,
        actor=officer.label,
        approver=approver.label,
    )
    handle = ctx.lifecycles.client.get_workflow_handle(wid)
    try:
        result: FundUseResult = await handle.execute_update(
            USE_UPDATE, use, result_type=FundUseResult
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        field, _, text = message.partition(": ")
        if isinstance(cause, ApplicationError) and cause.type == INSUFFICIENT_BALANCE:
            raise RequestValidationError([{"loc": ("body", field), "msg": text}]) from None
        raise HTTPException(403, message) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise HTTPException(504, "the fund did not answer in time") from None
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # No accrual ever reached this fund: its balance is nothing.
        raise RequestValidationError(
            [{"loc": ("body", "amount"), "msg": "exceeds the fund's balance of 0.00"}]
        ) from None
    return result
