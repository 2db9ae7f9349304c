"""Signed webhooks of the external systems, as workflow signals.

Systems authenticate with their HMAC secret, not with a person's token. The raw bytes are
verified before anything an attacker sent is parsed; redelivery is harmless because the
workflow applies each event_id once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from core.settings import EXCHANGES, SYSTEMS
from gateway.dependencies import Context, GatewayContext
from gateway.errors import ERRORS, parse
from gateway.lifecycles import Lifecycles
from gateway.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from schemas.commands import ListingExpired
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN
from schemas.evaluation_institution import EvaluationReportWebhook, InstitutionReport
from schemas.exchange_api import ExchangeWebhook
from schemas.gateway_api import Accepted, Problem
from schemas.incubation import CompanyFounded, IncubationMilestone, IncubatorAdmission
from schemas.refusals import ExternalEvent
from schemas.transaction import Bid, Deal, Payment
from schemas.webhooks import (
    IncubatorWebhook,
    MissingPart,
    PocFundWebhook,
    RegistryWebhook,
    exchange_signal_arg,
)
from workflows.lifecycle import AchievementLifecycle
from workflows.lifecycle.evaluation_institution import REPORT_SIGNAL as EVALUATION_REPORT
from workflows.proof_of_concept import ProofOfConcept

log = structlog.get_logger(__name__)
router = APIRouter(tags=["webhooks"])

MAX_WEBHOOK_BODY = 64 * 1024


@router.post(
    "/webhooks/{system}",
    summary="Signed webhook of an exchange, the registry, an incubator or the PoC fund",
    description=(
        "`system` is the sender: an exchange (`sstec`, `jstec`, `zjtec`, `ahtec`), `registry`, "
        "`incubator` or `poc-fund`, each with its own secret. HMAC-SHA256 over "
        "`<timestamp>.<raw body>` in `X-Webhook-Signature: v1=<hex>`, with "
        "`X-Webhook-Timestamp`; during a rotation the new and the old secret are both "
        "accepted. Bodies: an exchange's `ExchangeWebhook`, whose `exchange` must be the "
        "signer; incubator `IncubatorWebhook`; poc-fund `PocFundWebhook`; registry "
        "`RegistryWebhook`, or `EvaluationReportWebhook` (type `evaluation_report`: an "
        "evaluation institution's report, relayed by the registry). Redelivery is harmless: "
        "the workflow applies each event_id once. "
        "An accepted event that the lifecycle does not apply (an unknown listing, a wrong "
        "stage, a registry notice, a fund report with no proof of concept running) is recorded "
        "as an `external_event_refused` event with the reason; incubator events before the "
        "company exists are held until it is founded."
    ),
    status_code=202,
    response_model=Accepted,
    responses={
        400: ERRORS[400],
        401: {"model": Problem, "description": "Bad or stale signature"},
        403: {"model": Problem, "description": "Signed by one exchange, about another"},
        404: ERRORS[404],
        409: ERRORS[409],
        413: {"model": Problem, "description": "Body over 64 KiB"},
        422: ERRORS[422],
        429: ERRORS[429],
        503: ERRORS[503],
    },
)
async def webhook(system: str, request: Request, ctx: Context) -> Accepted:
    if system not in SYSTEMS:
        raise HTTPException(404, f"unknown webhook system {system!r}; known: {list(SYSTEMS)}")
    # Its size, encoding and depth were checked by BodyLimits (gateway/limits.py) already.
    body = await request.body()
    try:
        # Authenticate the raw bytes before parsing anything an attacker may have sent.
        verify(
            ctx.settings.webhook_secrets_of(system),
            body,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            ctx.settings.webhook_tolerance_seconds,
        )
    except SignatureError as exc:
        log.warning("webhook refused", system=system, reason=str(exc))
        raise HTTPException(401, "invalid webhook signature") from None
    if system in EXCHANGES:
        return await _exchange(ctx, body, system)
    if system == "incubator":
        return await _incubator(ctx, body)
    if system == "poc-fund":
        return await _poc_fund(ctx, body)
    return await _registry(ctx, body)


async def _exchange(ctx: GatewayContext, body: bytes, signer: str) -> Accepted:
    hook: ExchangeWebhook = parse(ExchangeWebhook, body)
    if hook.exchange != signer:
        # One exchange's secret never speaks for another's listings: refused, not applied.
        log.warning(
            "exchange webhook refused: signer and exchange differ",
            signer=signer,
            exchange=hook.exchange,
            event_id=hook.event_id,
            achievement_id=hook.achievement_id,
        )
        raise HTTPException(403, f"signed by {signer}, but the event is of {hook.exchange}")
    try:
        arg = exchange_signal_arg(hook)
    except MissingPart as exc:
        raise RequestValidationError([{"loc": ("body", exc.field), "msg": str(exc)}]) from None
    if not re.fullmatch(ACHIEVEMENT_ID_PATTERN, hook.achievement_id):
        # The exchange's schema leaves it a plain string; Temporal would refuse odd ids.
        raise RequestValidationError(
            [{"loc": ("body", "achievement_id"), "msg": "not an achievement id"}]
        )
    handle = ctx.lifecycles.handle(hook.achievement_id)
    if isinstance(arg, Bid):
        signal = handle.signal(AchievementLifecycle.exchange_bid, arg)
    elif isinstance(arg, Deal):
        signal = handle.signal(AchievementLifecycle.exchange_deal, arg)
    elif isinstance(arg, Payment):
        signal = handle.signal(AchievementLifecycle.exchange_payment, arg)
    else:
        assert isinstance(arg, ListingExpired)
        signal = handle.signal(AchievementLifecycle.listing_expired, arg)
    await _signal(
        ctx.lifecycles, hook.achievement_id, handle.id, hook.event_id, hook.type.value, signal
    )
    return Accepted(event_id=hook.event_id)


async def _incubator(ctx: GatewayContext, body: bytes) -> Accepted:
    hook: IncubatorWebhook = parse(IncubatorWebhook, body, strip_tag=True)
    event, arg = hook.root, hook.signal_arg()
    handle = ctx.lifecycles.handle(event.achievement_id)
    if isinstance(arg, CompanyFounded):
        signal = handle.signal(AchievementLifecycle.company_founded, arg)
    elif isinstance(arg, IncubatorAdmission):
        signal = handle.signal(AchievementLifecycle.incubator_admitted, arg)
    elif isinstance(arg, IncubationMilestone):
        signal = handle.signal(AchievementLifecycle.incubation_milestone, arg)
    else:
        signal = handle.signal(AchievementLifecycle.incubation_exit, arg)
    await _signal(
        ctx.lifecycles, event.achievement_id, handle.id, event.event_id, event.type, signal
    )
    return Accepted(event_id=event.event_id)


async def _poc_fund(ctx: GatewayContext, body: bytes) -> Accepted:
    hook: PocFundWebhook = parse(PocFundWebhook, body)
    report = hook.report
    handle = ctx.lifecycles.poc_handle(hook.achievement_id)
    signal = handle.signal(ProofOfConcept.milestone_reported, report)
    try:
        await _signal(
            ctx.lifecycles, hook.achievement_id, handle.id, report.event_id, hook.type, signal
        )
    except HTTPException as exc:
        if exc.status_code not in (404, 409):
            raise
        # No proof of concept running (none yet, or it is over): the lifecycle records the
        # report as refused, so it is not lost (404/409 if the lifecycle itself is not running).
        event = ExternalEvent(
            system="poc-fund",
            type=hook.type,
            event_id=report.event_id,
            details={
                "milestone_id": report.milestone_id,
                "achieved": str(report.achieved).lower(),
            },
        )
        await _external_event(ctx, hook.achievement_id, event)
    return Accepted(event_id=report.event_id)


async def _registry(ctx: GatewayContext, body: bytes) -> Accepted:
    """The registry's notices: no lifecycle step takes one yet, so the lifecycle records each
    as refused, with the reason, where an officer sees it (the feed, `status`)."""
    hook: RegistryWebhook = parse(RegistryWebhook, body)
    if hook.type == EVALUATION_REPORT:
        return await _evaluation_report(ctx, body)
    extra = sorted(hook.extra_fields())  # the names only: a sender's values go nowhere unchecked
    log.info("registry webhook", achievement_id=hook.achievement_id, type=hook.type, fields=extra)
    event = ExternalEvent(system="registry", type=hook.type, event_id=hook.event_id)
    await _external_event(ctx, hook.achievement_id, event)
    return Accepted(event_id=hook.event_id)


async def _evaluation_report(ctx: GatewayContext, body: bytes) -> Accepted:
    """An evaluation institution's signed report, relayed by the registry (plan item 6). The
    lifecycle applies it, or records it as refused with the reason (another request, a second
    report, one after the decision)."""
    hook: EvaluationReportWebhook = parse(EvaluationReportWebhook, body)
    report = InstitutionReport.model_validate(hook.model_dump(exclude={"type"}))
    handle = ctx.lifecycles.handle(hook.achievement_id)
    signal = handle.signal(AchievementLifecycle.evaluation_report, report)
    await _signal(
        ctx.lifecycles, hook.achievement_id, handle.id, hook.event_id, EVALUATION_REPORT, signal
    )
    return Accepted(event_id=hook.event_id)


async def _external_event(ctx: GatewayContext, achievement_id: str, event: ExternalEvent) -> None:
    handle = ctx.lifecycles.handle(achievement_id)
    signal = handle.signal(AchievementLifecycle.external_event, event)
    await _signal(ctx.lifecycles, achievement_id, handle.id, event.event_id, event.type, signal)


async def _signal(
    lifecycles: Lifecycles,
    achievement_id: str,
    wid: str,
    event_id: str,
    type: str,
    signal: Awaitable[None],
) -> None:
    bound = log.bind(achievement_id=achievement_id, workflow_id=wid, event_id=event_id)
    await lifecycles.call(wid, "achievement", lambda: signal)
    bound.info("webhook signalled", type=type)
