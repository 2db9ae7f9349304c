"""Transactional webhook outbox of the exchange sandbox and its delivery loop.

Events are written in the same transaction as the state change they describe, then delivered
at least once: receivers deduplicate on event_id (sent as X-Webhook-Id too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
import structlog

from gateway.signing import sign
from sandboxes.faults import FaultState
from sandboxes.store import Connection, Pool, Record
from schemas.exchange_api import ExchangeWebhook

log = structlog.get_logger(__name__)

SCHEMA = "exchange_sandbox"
# Each exchange posts to its own path, signed with its own secret.
WEBHOOK_PATH = "/webhooks/{exchange}"
POLL_INTERVAL = 0.1
BATCH_SIZE = 20
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# A claimed event not settled within this lease (e.g. the process died) is retried.
CLAIM_LEASE_SECONDS = 60
# The receiver asks for these to be retried; other 4xx mean it will never accept the event.
RETRYABLE_4XX = frozenset({408, 429})


async def enqueue(conn: Connection, event: ExchangeWebhook) -> None:
    """Add an event to the outbox; call inside the transaction of the change it reports."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.webhook_outbox"
        " (event_id, event_type, exchange, listing_id, achievement_id, body, created_at,"
        "  next_attempt_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        event.event_id,
        event.type.value,
        event.exchange,
        event.listing_id,
        event.achievement_id,
        event.model_dump_json(),
        event.occurred_at,
    )


def backoff(attempts: int) -> float:
    return min(FIRST_BACKOFF * 2.0 ** max(attempts - 1, 0), MAX_BACKOFF)


class OutboxPoller:
    """A background task that calls `deliver_due` until stopped, resting `poll_interval`
    whenever nothing was due: the loop every sandbox outbox shares."""

    name = "sandbox-outbox"
    poll_interval = POLL_INTERVAL

    def __init__(self, timeout: float) -> None:
        self._http = httpx.AsyncClient(timeout=timeout)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def deliver_due(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        if self._task is not None:
            # Let an in-flight delivery finish; an interrupted one is retried after its lease.
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._http.aclose()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = await self.deliver_due()
            except Exception:
                # The database may be restarting: keep polling rather than die silently.
                log.exception("outbox.poll_failed", outbox=self.name)
                handled = 0
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.poll_interval)


class WebhookDeliverer(OutboxPoller):
    """Polls the outbox and POSTs due events to the gateway until stopped."""

    name = "sandbox-webhook-delivery"

    def __init__(
        self,
        pool: Pool,
        gateway_url: str,
        secrets: Mapping[str, str],
        faults: FaultState,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(timeout)
        self._pool = pool
        self._url = gateway_url.rstrip("/") + WEBHOOK_PATH
        self._secrets = dict(secrets)
        self._faults = faults

    async def deliver_due(self) -> int:
        delay_s = self._faults.current.webhook_delay_ms / 1000
        # Claim with SKIP LOCKED and a lease, then send outside the transaction, so several
        # sandbox processes can share one outbox and no transaction stays open over HTTP.
        rows = await self._pool.fetch(
            f"""
            UPDATE {SCHEMA}.webhook_outbox o
               SET attempts = o.attempts + 1,
                   next_attempt_at = now() + make_interval(secs => $3)
             WHERE o.event_id IN (
                   SELECT event_id FROM {SCHEMA}.webhook_outbox
                    WHERE status = 'pending' AND next_attempt_at <= now()
                      AND created_at <= now() - make_interval(secs => $1)
                    ORDER BY created_at
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED)
            RETURNING o.event_id, o.body, o.attempts, o.event_type, o.created_at, o.exchange
            """,
            delay_s,
            BATCH_SIZE,
            float(CLAIM_LEASE_SECONDS),
        )
        for row in sorted(rows, key=lambda r: r["created_at"]):
            await self._deliver(row)
        return len(rows)

    async def _send(self, exchange: str, event_id: str, body: bytes) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Id": event_id,
            **sign(self._secrets[exchange], body),
        }
        return await self._http.post(
            self._url.format(exchange=exchange), content=body, headers=headers
        )

    async def _deliver(self, row: Record) -> None:
        event_id: str = row["event_id"]
        attempts: int = row["attempts"]
        body: bytes = row["body"].encode()
        logger = log.bind(event_id=event_id, event_type=row["event_type"], attempt=attempts)
        if self._faults.drop_webhook():
            # Simulates a delivery lost on the way: nothing is sent and it is retried later.
            logger.info("webhook.dropped_by_fault")
            await self._retry_later(event_id, attempts, None, "dropped by fault injection")
            return
        copies = 2 if self._faults.duplicate_webhook() else 1
        response: httpx.Response | None = None
        try:
            for _ in range(copies):
                response = await self._send(row["exchange"], event_id, body)
        except httpx.HTTPError as exc:
            # Gateway down or slow: retry with back-off, never give up on a transport error.
            logger.info("webhook.unreachable", error=type(exc).__name__)
            await self._retry_later(event_id, attempts, None, type(exc).__name__)
            return
        assert response is not None
        status = response.status_code
        if 200 <= status < 300:
            logger.info("webhook.delivered", status=status, copies=copies)
            await self._pool.execute(
                f"UPDATE {SCHEMA}.webhook_outbox SET status = 'delivered',"
                " delivered_at = $2, last_status = $3, last_error = NULL WHERE event_id = $1",
                event_id,
                datetime.now(UTC),
                status,
            )
        elif 400 <= status < 500 and status not in RETRYABLE_4XX:
            # The receiver refuses this event for good; keep it, with why, for operators.
            logger.warning("webhook.refused", status=status)
            await self._pool.execute(
                f"UPDATE {SCHEMA}.webhook_outbox SET status = 'failed',"
                " last_status = $2, last_error = $3 WHERE event_id = $1",
                event_id,
                status,
                response.text[:2000],
            )
        else:
            logger.info("webhook.retry", status=status)
            await self._retry_later(event_id, attempts, status, response.text[:2000])

    async def _retry_later(
        self, event_id: str, attempts: int, status: int | None, error: str
    ) -> None:
        await self._pool.execute(
            f"UPDATE {SCHEMA}.webhook_outbox"
            " SET next_attempt_at = now() + make_interval(secs => $2),"
            " last_status = $3, last_error = $4 WHERE event_id = $1",
            event_id,
            backoff(attempts),
            status,
            error,
        )
