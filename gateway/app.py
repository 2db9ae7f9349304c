"""The HTTP gateway: people and external systems change an achievement's state through it.

Disclosures start lifecycle workflows; reviews, decisions and commands are Temporal updates (so
a validator's refusal comes back as a 409 at once); signed webhooks become signals. Bad input is
refused here with every bad field named, before anything reaches Temporal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import asyncpg
import structlog
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gateway.codec_server import codec_router
from gateway.ids import poc_workflow_id, workflow_id
from gateway.read_views import read_views_router
from gateway.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from gateway.webhooks import (
    IncubatorWebhook,
    MissingPart,
    PocFundWebhook,
    RegistryWebhook,
    exchange_signal_arg,
)
from schemas.commands import Activation, ListingExpired, MandatoryListingExemption, Withdrawal
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN, Disclosure
from schemas.evaluation import OperatorDecision, Review
from schemas.exchange_api import KNOWN_EXCHANGES, ExchangeWebhook
from schemas.incubation import CompanyFounded, IncubationMilestone, IncubatorAdmission
from schemas.lifecycle import LifecycleInput, LifecycleState
from schemas.money import Money
from schemas.proof_of_concept import GoNoGo
from schemas.transaction import Bid, Deal, Payment, PricingMethod
from workers.policy_book import PolicyBook
from workers.settings import Settings
from workflows import search_attributes as sa
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept

log = structlog.get_logger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024
WEBHOOK_SYSTEMS = ("exchange", "registry", "incubator", "poc-fund")
HEALTH_TIMEOUT = timedelta(seconds=2)
# Same rule as Review.reviewer_id, so a panel member can actually submit a review.
REVIEWER_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"

T = TypeVar("T")
AchievementIdPath = Annotated[str, Path(pattern=ACHIEVEMENT_ID_PATTERN)]


# ---------------------------------------------------------------------------- bodies


class DisclosureRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    disclosure: Disclosure
    reviewers: list[Annotated[str, Field(pattern=REVIEWER_ID_PATTERN)]] = Field(
        default_factory=list, max_length=15, description="Assigned expert panel"
    )
    exchanges: list[str] = Field(default_factory=lambda: ["sstec"], min_length=1, max_length=4)
    asking_price: Money
    pricing: PricingMethod
    disclosed_by: str = Field(min_length=1, max_length=100)

    @field_validator("exchanges")
    @classmethod
    def _known_exchanges(cls, exchanges: list[str]) -> list[str]:
        unknown = [x for x in exchanges if x not in KNOWN_EXCHANGES]
        if unknown:
            raise ValueError(f"unknown exchange(s) {unknown}; known: {list(KNOWN_EXCHANGES)}")
        if len(set(exchanges)) != len(exchanges):
            raise ValueError("exchanges must not repeat")
        return exchanges


class Started(BaseModel):
    achievement_id: str
    workflow_id: str
    run_id: str
    policy_version: str
    duplicate: bool = False


class UpdateResult(BaseModel):
    achievement_id: str
    result: str | int | bool


class Accepted(BaseModel):
    accepted: bool = True
    event_id: str


class Health(BaseModel):
    status: str


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrors(BaseModel):
    detail: list[FieldError]


class Problem(BaseModel):
    detail: str
    field: str | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such achievement"},
    409: {"model": Problem, "description": "Refused in the current state"},
    422: {"model": ValidationErrors, "description": "Invalid input, every bad field named"},
}


# ---------------------------------------------------------------------------- helpers


def _field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as dotted field paths; the input value is never echoed back."""
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            loc = []
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


def _unprocessable(errors: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


class _Float(str):
    """A JSON number with a fraction or exponent, kept as its text."""


def _float_paths(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    if isinstance(value, _Float):
        return [".".join(path) or "body"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _float_paths(v, (*path, str(k)))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _float_paths(v, (*path, str(i)))]
    return []


def _refuse_floats(body: bytes) -> None:
    """Decimals (money, shares) must be sent as strings: a JSON float loses cents past 2**53."""
    try:
        parsed = json.loads(body, parse_float=_Float)
    except ValueError:
        return  # malformed JSON is reported by the model validation that follows
    paths = _float_paths(parsed)
    if paths:
        raise RequestValidationError(
            [
                {"loc": ("body", *p.split(".")), "msg": 'send decimals as strings, e.g. "12.50"'}
                for p in paths
            ]
        )


async def _exact_numbers(request: Request) -> None:
    _refuse_floats(await request.body())


def _parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        if isinstance(model, type) and issubclass(model, IncubatorWebhook):
            # A discriminated union puts the tag first in each location; the client sent none.
            errors = [{**e, "loc": e["loc"][1:]} if len(e["loc"]) > 1 else e for e in errors]
        raise RequestValidationError(errors) from None


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
        raise HTTPException(413, f"body larger than {MAX_WEBHOOK_BODY} bytes")
    # Chunked bodies carry no length: count while reading and stop at the limit.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WEBHOOK_BODY:
            raise HTTPException(413, f"body larger than {MAX_WEBHOOK_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------- the app


def create_gateway_app(
    client: Client,
    settings: Settings,
    policy_book: PolicyBook,
    pool: asyncpg.Pool | None = None,
) -> FastAPI:
    """`pool`: the projections' PostgreSQL; without it the list views and feed answer 503."""
    app = FastAPI(
        title="Achievement Lifecycle Engine gateway",
        description="Disclose achievements, submit reviews and commands, receive webhooks.",
        version="1",
    )

    @app.exception_handler(RequestValidationError)
    async def _validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _unprocessable(_field_errors(exc.errors()))

    @app.exception_handler(RPCError)
    async def _temporal_failed(_: Request, exc: RPCError) -> JSONResponse:
        # Anything not translated where it happened is Temporal being unavailable or slow.
        log.warning("temporal call failed", status=exc.status.name, message=exc.message)
        return JSONResponse(status_code=503, content={"detail": "workflow service unavailable"})

    async def status_of(wid: str) -> WorkflowExecutionStatus | None:
        """The status of the workflow's latest run, or None when there is no such workflow."""
        try:
            return (await client.get_workflow_handle(wid).describe()).status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def missing_or_closed(wid: str, what: str) -> HTTPException:
        """A NOT_FOUND from Temporal means either no such workflow or one already closed."""
        status = await status_of(wid)
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return HTTPException(404, f"no such {what}")
        return HTTPException(409, f"the {what} is already {status.name.lower()}")

    async def no_poc(achievement_id: str) -> HTTPException:
        """No proof-of-concept child: tell "no such achievement" from "not in that stage"."""
        if await status_of(workflow_id(achievement_id)) is None:
            return HTTPException(404, "no such achievement")
        return HTTPException(409, "the achievement has no proof of concept running")

    async def call(wid: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Temporal call on a workflow and translate its failures into HTTP answers."""
        try:
            return await fn()
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            log.info("update refused", workflow_id=wid, reason=message)
            raise HTTPException(409, message) from None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise HTTPException(504, "the workflow did not answer in time") from None
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
            raise HTTPException(409, f"the {what} cannot be read: {exc}") from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise await missing_or_closed(wid, what) from None
            raise

    def lifecycle(achievement_id: str) -> Any:
        return client.get_workflow_handle_for(AchievementLifecycle.run, workflow_id(achievement_id))

    # ------------------------------------------------------------------ health

    @app.get(
        "/healthz", summary="Liveness, including the Temporal connection", response_model=Health
    )
    async def healthz() -> JSONResponse:
        try:
            ok = await client.service_client.check_health(timeout=HEALTH_TIMEOUT)
        except RPCError:
            ok = False
        if not ok:
            return JSONResponse(status_code=503, content={"status": "temporal unavailable"})
        return JSONResponse(content={"status": "ok"})

    # ------------------------------------------------------------------ disclosure

    @app.post(
        "/achievements",
        summary="Disclose an achievement and start its lifecycle",
        status_code=201,
        response_model=Started,
        responses={
            200: {"model": Started, "description": "The same disclosure again: nothing started"},
            409: _ERRORS[409],
            422: _ERRORS[422],
        },
        dependencies=[Depends(_exact_numbers)],
    )
    async def disclose(request: DisclosureRequest) -> Any:
        d = request.disclosure
        wid = workflow_id(d.achievement_id)
        bound = log.bind(achievement_id=d.achievement_id, workflow_id=wid)
        policy = policy_book.current(d.institution.code)
        attributes: list[SearchAttributePair[Any]] = [
            SearchAttributePair(sa.STAGE, "disclosure"),
            SearchAttributePair(sa.INSTITUTION, d.institution.code),
            SearchAttributePair(sa.TECHNOLOGY_FIELD, d.field.value),
            SearchAttributePair(sa.TRANSFORMATION_MODES, [m.value for m in d.intended_modes]),
            SearchAttributePair(sa.FUNDING_SOURCES, sorted({f.kind.value for f in d.funding})),
        ]
        # The summary is confidential: the UI shows title, institution and field only.
        summary = f"{d.title} | {d.institution.code} {d.institution.name} | {d.field.value}"
        try:
            handle = await client.start_workflow(
                AchievementLifecycle.run,
                LifecycleInput(
                    disclosure=d,
                    policy=policy,
                    disclosed_at=datetime.now(UTC),
                    disclosed_by=request.disclosed_by,
                    reviewers=request.reviewers,
                    exchanges=request.exchanges,
                    asking_price=request.asking_price,
                    pricing=request.pricing,
                ),
                id=wid,
                task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=summary,
                search_attributes=TypedSearchAttributes(attributes),
            )
        except WorkflowAlreadyStartedError as exc:
            existing = lifecycle(d.achievement_id)
            state: LifecycleState = await call(
                wid, "achievement", lambda: existing.query(AchievementLifecycle.state_query)
            )
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
            run_id = exc.run_id or (await existing.describe()).run_id
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

    @app.get(
        "/achievements/{achievement_id}",
        summary="The full lifecycle state of an achievement",
        response_model=LifecycleState,
        responses={404: _ERRORS[404]},
    )
    async def get_state(achievement_id: AchievementIdPath) -> LifecycleState:
        handle = lifecycle(achievement_id)
        state: LifecycleState = await call(
            handle.id, "achievement", lambda: handle.query(AchievementLifecycle.state_query)
        )
        return state

    # ------------------------------------------------------------------ updates (people)

    async def update(achievement_id: str, name: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        handle = lifecycle(achievement_id)
        log.info("update", update=name, achievement_id=achievement_id, workflow_id=handle.id)
        return await call(handle.id, "achievement", lambda: fn(handle))

    update_responses: dict[int | str, dict[str, Any]] = {k: _ERRORS[k] for k in (404, 409, 422)}

    @app.post(
        "/achievements/{achievement_id}/reviews",
        summary="An assigned expert submits a scored review",
        response_model=UpdateResult,
        responses=update_responses,
    )
    async def submit_review(achievement_id: AchievementIdPath, review: Review) -> UpdateResult:
        result = await update(
            achievement_id,
            "submit_review",
            lambda h: h.execute_update(AchievementLifecycle.submit_review, review),
        )
        return UpdateResult(achievement_id=achievement_id, result=result)

    @app.post(
        "/achievements/{achievement_id}/decision",
        summary="An operator routes the achievement (e.g. after a review escalation)",
        response_model=UpdateResult,
        responses=update_responses,
    )
    async def decide(achievement_id: AchievementIdPath, decision: OperatorDecision) -> UpdateResult:
        result = await update(
            achievement_id,
            "decide",
            lambda h: h.execute_update(AchievementLifecycle.decide, decision),
        )
        return UpdateResult(achievement_id=achievement_id, result=result)

    @app.post(
        "/achievements/{achievement_id}/activate",
        summary="Activate a dormant scientific resource with its transformation modes",
        response_model=UpdateResult,
        responses=update_responses,
    )
    async def activate(achievement_id: AchievementIdPath, activation: Activation) -> UpdateResult:
        result = await update(
            achievement_id,
            "activate",
            lambda h: h.execute_update(AchievementLifecycle.activate, activation),
        )
        return UpdateResult(achievement_id=achievement_id, result=result)

    @app.post(
        "/achievements/{achievement_id}/withdraw",
        summary="Withdraw or abandon the achievement, with a reason",
        response_model=UpdateResult,
        responses=update_responses,
    )
    async def withdraw(achievement_id: AchievementIdPath, withdrawal: Withdrawal) -> UpdateResult:
        result = await update(
            achievement_id,
            "withdraw",
            lambda h: h.execute_update(AchievementLifecycle.withdraw, withdrawal),
        )
        return UpdateResult(achievement_id=achievement_id, result=result)

    @app.post(
        "/achievements/{achievement_id}/exemption",
        summary="Exempt from mandatory listing, with a justification",
        response_model=UpdateResult,
        responses=update_responses,
    )
    async def exempt(
        achievement_id: AchievementIdPath, exemption: MandatoryListingExemption
    ) -> UpdateResult:
        result = await update(
            achievement_id,
            "exempt_mandatory_listing",
            lambda h: h.execute_update(AchievementLifecycle.exempt_mandatory_listing, exemption),
        )
        return UpdateResult(achievement_id=achievement_id, result=result)

    @app.post(
        "/achievements/{achievement_id}/poc/decision",
        summary="Record the proof-of-concept go/no-go gate",
        response_model=UpdateResult,
        responses=update_responses,
    )
    async def go_no_go(achievement_id: AchievementIdPath, decision: GoNoGo) -> UpdateResult:
        wid = poc_workflow_id(achievement_id)
        handle = client.get_workflow_handle_for(ProofOfConcept.run, wid)
        log.info("update", update="go_no_go", achievement_id=achievement_id, workflow_id=wid)
        try:
            result = await call(
                wid,
                "proof of concept",
                lambda: handle.execute_update(ProofOfConcept.go_no_go, decision),
            )
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            raise await no_poc(achievement_id) from None
        return UpdateResult(achievement_id=achievement_id, result=result)

    # ------------------------------------------------------------------ webhooks (systems)

    @app.post(
        "/webhooks/{system}",
        summary="Signed webhook of the exchange, registry, incubator or proof-of-concept fund",
        description=(
            "HMAC-SHA256 over `<timestamp>.<raw body>` in `X-Webhook-Signature: v1=<hex>`, with "
            "`X-Webhook-Timestamp`. Bodies: exchange `ExchangeWebhook`; incubator "
            "`IncubatorWebhook`; poc-fund `PocFundWebhook`; registry `RegistryWebhook`. "
            "Redelivery is harmless: the workflow applies each event_id once."
        ),
        status_code=202,
        response_model=Accepted,
        responses={
            401: {"model": Problem, "description": "Bad or stale signature"},
            404: _ERRORS[404],
            409: _ERRORS[409],
            413: {"model": Problem, "description": "Body over 64 KiB"},
            422: _ERRORS[422],
        },
    )
    async def webhook(system: str, request: Request) -> Accepted:
        if system not in WEBHOOK_SYSTEMS:
            raise HTTPException(404, f"unknown webhook system {system!r}")
        body = await _read_limited(request)
        try:
            # Authenticate the raw bytes before parsing anything an attacker may have sent.
            verify(
                settings.webhook_secret(system).get_secret_value(),
                body,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                settings.webhook_tolerance_seconds,
            )
        except SignatureError as exc:
            log.warning("webhook refused", system=system, reason=str(exc))
            raise HTTPException(401, "invalid webhook signature") from None
        _refuse_floats(body)
        if system == "exchange":
            return await _exchange(body)
        if system == "incubator":
            return await _incubator(body)
        if system == "poc-fund":
            return await _poc_fund(body)
        hook: RegistryWebhook = _parse(RegistryWebhook, body)
        log.info(
            "registry webhook acknowledged",
            achievement_id=hook.achievement_id,
            event_id=hook.event_id,
            type=hook.type,
        )
        return Accepted(event_id=hook.event_id)

    async def _exchange(body: bytes) -> Accepted:
        hook: ExchangeWebhook = _parse(ExchangeWebhook, body)
        try:
            arg = exchange_signal_arg(hook)
        except MissingPart as exc:
            raise RequestValidationError([{"loc": ("body", exc.field), "msg": str(exc)}]) from None
        if not re.fullmatch(ACHIEVEMENT_ID_PATTERN, hook.achievement_id):
            # The exchange's schema leaves it a plain string; Temporal would refuse odd ids.
            raise RequestValidationError(
                [{"loc": ("body", "achievement_id"), "msg": "not an achievement id"}]
            )
        handle = lifecycle(hook.achievement_id)
        if isinstance(arg, Bid):
            signal = handle.signal(AchievementLifecycle.exchange_bid, arg)
        elif isinstance(arg, Deal):
            signal = handle.signal(AchievementLifecycle.exchange_deal, arg)
        elif isinstance(arg, Payment):
            signal = handle.signal(AchievementLifecycle.exchange_payment, arg)
        else:
            assert isinstance(arg, ListingExpired)
            signal = handle.signal(AchievementLifecycle.listing_expired, arg)
        await _signal(hook.achievement_id, handle.id, hook.event_id, hook.type.value, signal)
        return Accepted(event_id=hook.event_id)

    async def _incubator(body: bytes) -> Accepted:
        hook: IncubatorWebhook = _parse(IncubatorWebhook, body)
        event, arg = hook.root, hook.signal_arg()
        handle = lifecycle(event.achievement_id)
        if isinstance(arg, CompanyFounded):
            signal = handle.signal(AchievementLifecycle.company_founded, arg)
        elif isinstance(arg, IncubatorAdmission):
            signal = handle.signal(AchievementLifecycle.incubator_admitted, arg)
        elif isinstance(arg, IncubationMilestone):
            signal = handle.signal(AchievementLifecycle.incubation_milestone, arg)
        else:
            signal = handle.signal(AchievementLifecycle.incubation_exit, arg)
        await _signal(event.achievement_id, handle.id, event.event_id, event.type, signal)
        return Accepted(event_id=event.event_id)

    async def _poc_fund(body: bytes) -> Accepted:
        hook: PocFundWebhook = _parse(PocFundWebhook, body)
        wid = poc_workflow_id(hook.achievement_id)
        handle = client.get_workflow_handle_for(ProofOfConcept.run, wid)
        signal = handle.signal(ProofOfConcept.milestone_reported, hook.report)
        try:
            await _signal(hook.achievement_id, wid, hook.report.event_id, hook.type, signal)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            raise await no_poc(hook.achievement_id) from None
        return Accepted(event_id=hook.report.event_id)

    async def _signal(
        achievement_id: str, wid: str, event_id: str, type: str, signal: Awaitable[None]
    ) -> None:
        bound = log.bind(achievement_id=achievement_id, workflow_id=wid, event_id=event_id)
        await call(wid, "achievement", lambda: signal)
        bound.info("webhook signalled", type=type)

    # Lists and the event feed, read from PostgreSQL (never from visibility).
    app.include_router(read_views_router(pool))
    # The Web UI's codec server, with the client's own codec (404 when encryption is off).
    app.include_router(codec_router(client.data_converter.payload_codec, settings))
    return app
