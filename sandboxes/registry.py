"""Sandbox of the S&T achievement registry: registrations, PoC funding and reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sandboxes import faults as faults_mod
from sandboxes.evaluators import EvaluatorBehaviour, ReportDeliverer, due_at, enqueue, report_of
from sandboxes.store import (
    JSON,
    Connection,
    Pool,
    SandboxError,
    idempotent,
    install_error_handlers,
    open_pool,
)
from schemas.evaluation import ReviewScores
from schemas.exchange_api import Faults
from schemas.proof_of_concept import PocMilestone
from schemas.registry_api import (
    AchievementRegistration,
    AnnualReportRequest,
    ContractRegistrationResponse,
    EquityRegistrationResponse,
    EvaluationReminder,
    EvaluationReminderReceipt,
    EvaluationRequest,
    EvaluationRequestReceipt,
    LifecycleReportRequest,
    PocApplicationRequest,
    PocApplicationResponse,
    PocCancellationRequest,
    PocCancellationResponse,
    RegisterAchievementRequest,
    RegisterContractRequest,
    RegisterEquityRequest,
    ReportReceipt,
)
from schemas.transaction import ContractType

log = structlog.get_logger(__name__)

SCHEMA = "registry_sandbox"
# Technology development, transfer and licence income qualifies for China's tax relief;
# consulting and service income does not.
TAX_ELIGIBLE = frozenset({ContractType.DEVELOPMENT, ContractType.TRANSFER, ContractType.LICENCE})
POC_GRANT = Decimal("500000.00")
POC_MILESTONES = (
    ("m1", "Prototype built", 90),
    ("m2", "Technical feasibility validated", 180),
    ("m3", "Market feasibility validated", 270),
)
# Record kind -> (sequence, number prefix); kinds are also the keys of /sandbox/records.
KINDS = {
    "achievement": ("achievement_seq", "REG"),
    "contract": ("contract_seq", "TC"),
    "equity": ("equity_seq", "EQ"),
    "poc_application": ("poc_seq", "POC"),
    "lifecycle_report": ("report_seq", "RPT"),
    "annual_report": ("annual_seq", "ANN"),
    "evaluation_request": ("evaluation_seq", "EVR"),
}
RECORD_GROUPS = {
    "achievement": "achievements",
    "contract": "contracts",
    "equity": "equity",
    "poc_application": "poc_applications",
    "poc_cancellation": "poc_cancellations",
    "lifecycle_report": "lifecycle_reports",
    "annual_report": "annual_reports",
    "evaluation_request": "evaluation_requests",
    "evaluation_reminder": "evaluation_reminders",
}
# How long the sandbox's evaluation institutions take to report, unless told otherwise.
EVALUATION_DELAY = timedelta(seconds=5)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _milestones(req: PocApplicationRequest) -> list[PocMilestone]:
    """The applicant's schedule when it sends one (offsets from applied_at), else the fund's
    own: 90, 180 and 270 days from the application day, each due by the end of its day."""
    if req.milestone_offsets is None:
        return [
            PocMilestone(milestone_id=mid, title=title, due=req.applied_on + timedelta(days=days))
            for mid, title, days in POC_MILESTONES
        ]
    start = req.applied_at or datetime.combine(req.applied_on, time.min, tzinfo=UTC)
    titles = [title for _, title, _ in POC_MILESTONES]
    planned = []
    for i, offset in enumerate(req.milestone_offsets):
        due_at = start + offset
        title = titles[i] if i < len(titles) else f"Milestone {i + 1}"
        planned.append(
            PocMilestone(milestone_id=f"m{i + 1}", title=title, due=due_at.date(), due_at=due_at)
        )
    return planned


async def _number(conn: Connection, kind: str, now: datetime) -> str:
    sequence, prefix = KINDS[kind]
    seq = await conn.fetchval(f"SELECT nextval('{SCHEMA}.{sequence}')")
    return f"{prefix}-{now.year}-{seq:06d}"


async def _record(
    conn: Connection, kind: str, number: str, subject: str, request: BaseModel, response: JSON
) -> None:
    await conn.execute(
        f"INSERT INTO {SCHEMA}.records (number, kind, subject, request, response)"
        " VALUES ($1, $2, $3, $4, $5)",
        number,
        kind,
        subject,
        request.model_dump(mode="json"),
        response,
    )


def create_registry_app(
    dsn: str,
    faults: Faults | None = None,
    gateway_url: str | None = None,
    webhook_secret: str | None = None,
    evaluation_delay: timedelta = EVALUATION_DELAY,
) -> FastAPI:
    """`gateway_url` and the registry's `webhook_secret`: where and how the evaluation
    institutions' reports are relayed (without them, reports wait in the outbox)."""
    state = faults_mod.FaultState(faults)
    pools: list[Pool] = []
    evaluators: dict[str, EvaluatorBehaviour] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(dsn)
        pools.append(pool)
        deliverer = None
        if gateway_url is not None and webhook_secret is not None:
            deliverer = ReportDeliverer(pool, gateway_url, webhook_secret)
            deliverer.start()
        log.info("sandbox.started", system="registry")
        try:
            yield
        finally:
            if deliverer is not None:
                await deliverer.stop()
            pools.remove(pool)
            await pool.close()
            log.info("sandbox.stopped", system="registry")

    app = FastAPI(
        title="S&T achievement registry API (sandbox)",
        description="Registration of achievements, technology contracts and technology "
        "equity; proof-of-concept funding; lifecycle and annual reports. Every mutating call "
        "takes an Idempotency-Key header: a repeat returns the original result. /sandbox "
        "routes are test mode only.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    faults_mod.install(app, state, "registry")

    def pool() -> Pool:
        return pools[0]

    def scope(request: Request) -> str:
        return f"{request.method} {request.url.path}"

    @app.post("/v1/achievements", status_code=201, response_model=AchievementRegistration)
    async def register_achievement(
        req: RegisterAchievementRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        async def effect(conn: Connection) -> JSON:
            now = datetime.now(UTC)
            number = await _number(conn, "achievement", now)
            response = AchievementRegistration(registration_number=number, registered_at=now)
            body = response.model_dump(mode="json")
            try:
                # The unique index also settles two concurrent registrations under new keys.
                await _record(conn, "achievement", number, req.achievement_id, req, body)
            except asyncpg.UniqueViolationError:
                raise SandboxError(
                    409,
                    "already_registered",
                    f"achievement {req.achievement_id} is already registered",
                    ["achievement_id"],
                ) from None
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.get("/v1/achievements/{achievement_id}")
    async def get_achievement(achievement_id: str) -> dict[str, Any]:
        row = await pool().fetchrow(
            f"SELECT request, response FROM {SCHEMA}.records"
            " WHERE kind = 'achievement' AND subject = $1",
            achievement_id,
        )
        if row is None:
            raise SandboxError(404, "not_found", f"achievement {achievement_id} is not registered")
        request_body: JSON = row["request"]
        return {
            "achievement_id": achievement_id,
            "title": request_body["title"],
            "institution_code": request_body["institution_code"],
            **row["response"],
        }

    @app.post("/v1/contracts", status_code=201, response_model=ContractRegistrationResponse)
    async def register_contract(
        req: RegisterContractRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        async def effect(conn: Connection) -> JSON:
            registered = await conn.fetchval(
                f"SELECT subject FROM {SCHEMA}.records WHERE kind = 'achievement' AND number = $1",
                req.registration_number,
            )
            if registered != req.achievement_id:
                # A real registry only certifies contracts on achievements it knows.
                raise SandboxError(
                    422,
                    "unknown_registration",
                    "registration_number is not a registration of this achievement",
                    ["registration_number"],
                )
            now = datetime.now(UTC)
            number = await _number(conn, "contract", now)
            body = ContractRegistrationResponse(
                certificate_number=number,
                verified_amount=req.amount,
                tax_preference_eligible=req.contract_type in TAX_ELIGIBLE,
                registered_at=now,
            ).model_dump(mode="json")
            await _record(conn, "contract", number, req.achievement_id, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.post("/v1/equity", status_code=201, response_model=EquityRegistrationResponse)
    async def register_equity(
        req: RegisterEquityRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        async def effect(conn: Connection) -> JSON:
            now = datetime.now(UTC)
            number = await _number(conn, "equity", now)
            # Only what the institution holds is state-owned: the team's part is private.
            team = req.team_equity_share or Decimal(0)
            body = EquityRegistrationResponse(
                equity_certificate=number,
                state_owned_equity=req.state_owned and team < req.equity_share,
                registered_at=now,
                team_equity_share=req.team_equity_share,
            ).model_dump(mode="json")
            await _record(conn, "equity", number, req.achievement_id, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.post("/v1/poc-applications", status_code=201, response_model=PocApplicationResponse)
    async def apply_for_poc(
        req: PocApplicationRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        async def effect(conn: Connection) -> JSON:
            now = datetime.now(UTC)
            # Milestones are planned from when the applicant says it applies.
            number = await _number(conn, "poc_application", now)
            body = PocApplicationResponse(
                application_number=number, granted_amount=POC_GRANT, milestones=_milestones(req)
            ).model_dump(mode="json")
            await _record(conn, "poc_application", number, req.achievement_id, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.post(
        "/v1/poc-applications/{application_number}/cancellation",
        response_model=PocCancellationResponse,
    )
    async def cancel_poc_application(
        application_number: str,
        req: PocCancellationRequest,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Cancel a proof-of-concept application (e.g. a mandatory listing supersedes it).
        Idempotent by key and by nature: a cancelled application answers as it was cancelled."""

        async def effect(conn: Connection) -> JSON:
            application = await conn.fetchrow(
                f"SELECT subject, response FROM {SCHEMA}.records"
                " WHERE kind = 'poc_application' AND number = $1",
                application_number,
            )
            if application is None or application["subject"] != req.achievement_id:
                raise SandboxError(
                    404,
                    "not_found",
                    f"no proof-of-concept application {application_number} of this achievement",
                    ["application_number"],
                )
            number = f"{application_number}/cancellation"
            earlier: JSON | None = await conn.fetchval(
                f"SELECT response FROM {SCHEMA}.records WHERE number = $1", number
            )
            if earlier is not None:
                return earlier
            body = PocCancellationResponse(
                application_number=application_number,
                granted_amount=application["response"]["granted_amount"],
                cancelled_at=datetime.now(UTC),
                reason=req.reason,
            ).model_dump(mode="json")
            await _record(conn, "poc_cancellation", number, req.achievement_id, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 200)

    @app.post("/v1/lifecycle-reports", status_code=201, response_model=ReportReceipt)
    async def submit_lifecycle_report(
        req: LifecycleReportRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        async def effect(conn: Connection) -> JSON:
            now = datetime.now(UTC)
            number = await _number(conn, "lifecycle_report", now)
            body = ReportReceipt(receipt_number=number, received_at=now).model_dump(mode="json")
            await _record(conn, "lifecycle_report", number, req.achievement_id, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.post("/v1/annual-reports", status_code=201, response_model=ReportReceipt)
    async def submit_annual_report(
        req: AnnualReportRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        async def effect(conn: Connection) -> JSON:
            now = datetime.now(UTC)
            number = await _number(conn, "annual_report", now)
            body = ReportReceipt(receipt_number=number, received_at=now).model_dump(mode="json")
            subject = f"{req.institution_code}/{req.year}"
            await _record(conn, "annual_report", number, subject, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.post("/v1/evaluation-requests", status_code=201, response_model=EvaluationRequestReceipt)
    async def request_evaluation(
        req: EvaluationRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        """Forward an evaluation request to the accredited evaluation institution (plan item 6);
        its signed report comes back as a registry webhook of type `evaluation_report`."""

        behaviour = evaluators.get(req.evaluator, EvaluatorBehaviour())

        async def effect(conn: Connection) -> JSON:
            if not behaviour.accredited:
                raise SandboxError(
                    422,
                    "not_accredited",
                    f"{req.evaluator} is not an accredited evaluation institution",
                    ["evaluator"],
                )
            now = datetime.now(UTC)
            number = await _number(conn, "evaluation_request", now)
            body = EvaluationRequestReceipt(
                request_number=number, evaluator=req.evaluator, requested_at=now
            ).model_dump(mode="json")
            await _record(conn, "evaluation_request", number, req.achievement_id, req, body)
            if behaviour.reports:
                report = report_of(req, number, behaviour.scores, now)
                await enqueue(conn, report, due_at(behaviour, evaluation_delay, now))
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.post(
        "/v1/evaluation-requests/{request_number}/reminders",
        response_model=EvaluationReminderReceipt,
    )
    async def remind_evaluation(
        request_number: str,
        req: EvaluationReminder,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Remind the evaluation institution that its report is overdue."""

        async def effect(conn: Connection) -> JSON:
            asked = await conn.fetchval(
                f"SELECT subject FROM {SCHEMA}.records"
                " WHERE kind = 'evaluation_request' AND number = $1",
                request_number,
            )
            if asked is None or asked != req.achievement_id:
                raise SandboxError(
                    404,
                    "not_found",
                    f"no evaluation request {request_number} of this achievement",
                    ["request_number"],
                )
            now = datetime.now(UTC)
            sent = await conn.fetchval(
                f"SELECT count(*) FROM {SCHEMA}.records WHERE kind = 'evaluation_reminder'"
                " AND number LIKE $1 || '/reminder/%'",
                request_number,
            )
            number = f"{request_number}/reminder/{sent + 1}"
            body = EvaluationReminderReceipt(
                request_number=request_number, reminded_at=now
            ).model_dump(mode="json")
            await _record(conn, "evaluation_reminder", number, req.achievement_id, req, body)
            return body

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 200)

    @app.put("/sandbox/evaluators/{code}", tags=["sandbox"])
    async def set_evaluator(code: str, behaviour: EvaluatorBehaviour) -> EvaluatorBehaviour:
        """How the sandbox's evaluation institution `code` answers the next requests."""
        evaluators[code] = behaviour
        return behaviour

    @app.put("/sandbox/evaluation-requests/{request_number}/reports/{copy}", tags=["sandbox"])
    async def send_report(
        request_number: str, copy: Annotated[int, Path(ge=1, le=100)], scores: ReviewScores
    ) -> dict[str, str]:
        """Have the institution report on a request now; `copy` 2 and on: further reports.
        Idempotent: the same copy is one report (one event id), however often it is put."""
        async with pool().acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT request FROM {SCHEMA}.records"
                " WHERE kind = 'evaluation_request' AND number = $1",
                request_number,
            )
            if row is None:
                raise SandboxError(404, "not_found", f"no evaluation request {request_number}")
            now = datetime.now(UTC)
            asked = EvaluationRequest.model_validate(row["request"])
            report = report_of(asked, request_number, scores, now, copy)
            await enqueue(conn, report, now)
        return {"event_id": report.event_id}

    @app.get("/sandbox/records")
    async def records() -> dict[str, dict[str, int]]:
        rows = await pool().fetch(
            f"SELECT kind, subject, count(*) AS n FROM {SCHEMA}.records GROUP BY kind, subject"
        )
        counts: dict[str, dict[str, int]] = {group: {} for group in RECORD_GROUPS.values()}
        for row in rows:
            counts[RECORD_GROUPS[row["kind"]]][row["subject"]] = row["n"]
        return counts

    return app
