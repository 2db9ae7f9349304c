"""The registry sandbox plays the evaluation institutions (plan item 6).

When the registry forwards an evaluation request, the sandbox's institution answers with a
report after a configurable delay (per institution code, set at run time through
`PUT /sandbox/evaluators/{code}`; by default the app's delay and a market-ready score). The
report goes into an outbox in the same transaction as the request, and is delivered at least
once, signed with the registry's webhook secret, to the gateway's `/webhooks/registry`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field

from gateway.signing import sign
from sandboxes.store import Connection, Pool, Record
from sandboxes.webhooks import RETRYABLE_4XX, OutboxPoller, backoff
from schemas.evaluation import Recommendation, ReviewScores
from schemas.evaluation_institution import EvaluationReportWebhook
from schemas.registry_api import EvaluationRequest

log = structlog.get_logger(__name__)

SCHEMA = "registry_sandbox"
WEBHOOK_PATH = "/webhooks/registry"
POLL_INTERVAL = 0.2
BATCH_SIZE = 20
CLAIM_LEASE_SECONDS = 60
DEFAULT_SCORES = ReviewScores(
    novelty=4,
    maturity=4,
    market=4,
    ip_strength=4,
    recommendation=Recommendation.TRANSACTION,
    comment="Sandbox evaluation institution: market-ready.",
)


class EvaluatorBehaviour(BaseModel):
    """How one sandbox evaluation institution answers requests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    report_after_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="Delay before the report; None: the app's default delay",
    )
    reports: bool = Field(default=True, description="False: never reports (to see the SLA)")
    accredited: bool = Field(default=True, description="False: the registry refuses requests")
    scores: ReviewScores = DEFAULT_SCORES


def report_of(
    request: EvaluationRequest,
    request_number: str,
    scores: ReviewScores,
    now: datetime,
    copy: int = 1,
) -> EvaluationReportWebhook:
    """The institution's report on a request; `copy` numbers a second one (tests send them)."""
    suffix = "" if copy == 1 else f"-{copy}"
    return EvaluationReportWebhook(
        **scores.model_dump(),
        type="evaluation_report",
        event_id=f"{request_number}/report{suffix}",
        achievement_id=request.achievement_id,
        request_number=request_number,
        evaluator=request.evaluator,
        report_number=f"{request_number}-R{suffix}",
        signed_by=f"Chief appraiser, {request.evaluator}",
        reported_at=now,
    )


async def enqueue(conn: Connection, report: EvaluationReportWebhook, due_at: datetime) -> None:
    """Add a report to the outbox; call inside the transaction of the request it answers."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.report_outbox (event_id, request_number, body, due_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
        report.event_id,
        report.request_number,
        report.model_dump_json(),
        due_at,
    )


class ReportDeliverer(OutboxPoller):
    """Polls the report outbox and POSTs due reports to the gateway until stopped."""

    name = "sandbox-evaluation-reports"
    poll_interval = POLL_INTERVAL

    def __init__(self, pool: Pool, gateway_url: str, secret: str, timeout: float = 10.0) -> None:
        super().__init__(timeout)
        self._pool = pool
        self._url = gateway_url.rstrip("/") + WEBHOOK_PATH
        self._secret = secret

    async def deliver_due(self) -> int:
        # Claimed with a lease, sent outside the transaction (as the exchange's webhooks).
        rows = await self._pool.fetch(
            f"""
            UPDATE {SCHEMA}.report_outbox o
               SET attempts = o.attempts + 1,
                   due_at = now() + make_interval(secs => $2)
             WHERE o.event_id IN (
                   SELECT event_id FROM {SCHEMA}.report_outbox
                    WHERE status = 'pending' AND due_at <= now()
                    ORDER BY due_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED)
            RETURNING o.event_id, o.body, o.attempts
            """,
            BATCH_SIZE,
            float(CLAIM_LEASE_SECONDS),
        )
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: Record) -> None:
        event_id: str = row["event_id"]
        body: bytes = row["body"].encode()
        logger = log.bind(event_id=event_id, attempt=row["attempts"])
        headers = {"Content-Type": "application/json", "X-Webhook-Id": event_id}
        try:
            response = await self._http.post(
                self._url, content=body, headers={**headers, **sign(self._secret, body)}
            )
        except httpx.HTTPError as exc:
            logger.info("evaluation_report.unreachable", error=type(exc).__name__)
            await self._settle(event_id, "pending", None, type(exc).__name__, row["attempts"])
            return
        status = response.status_code
        if 200 <= status < 300:
            logger.info("evaluation_report.delivered", status=status)
            await self._settle(event_id, "delivered", status, None, None)
        elif 400 <= status < 500 and status not in RETRYABLE_4XX:
            logger.warning("evaluation_report.refused", status=status, answer=response.text[:300])
            await self._settle(event_id, "failed", status, response.text[:2000], None)
        else:
            logger.info("evaluation_report.retry", status=status)
            await self._settle(event_id, "pending", status, response.text[:2000], row["attempts"])

    async def _settle(
        self,
        event_id: str,
        status: str,
        http_status: int | None,
        error: str | None,
        retry: int | None,
    ) -> None:
        """Delivered, failed for good, or (`retry`: the attempts so far) due again after a
        back-off."""
        delay = backoff(retry) if retry is not None else 0.0
        await self._pool.execute(
            f"UPDATE {SCHEMA}.report_outbox SET status = $2, last_status = $3, last_error = $4,"
            " delivered_at = CASE WHEN $2::text = 'delivered' THEN now() END,"
            " due_at = now() + make_interval(secs => $5::float8)"
            " WHERE event_id = $1",
            event_id,
            status,
            http_status,
            error,
            delay,
        )


def due_at(behaviour: EvaluatorBehaviour, default_delay: timedelta, now: datetime) -> datetime:
    if behaviour.report_after_seconds is None:
        return now + default_delay
    return now + timedelta(seconds=behaviour.report_after_seconds)
