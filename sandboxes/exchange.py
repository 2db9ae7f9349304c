"""Sandbox of the technology exchanges of the Yangtze River Delta network.

Besides the public /v1 API it offers test-mode triggers under /sandbox, through which demos
and tests act as buyers: bids, deals, payments and expiry, each reported by a signed webhook.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse

from sandboxes import faults as faults_mod
from sandboxes.store import (
    JSON,
    Connection,
    Pool,
    Record,
    SandboxError,
    idempotent,
    install_error_handlers,
    open_pool,
)
from sandboxes.webhooks import WebhookDeliverer, enqueue
from schemas.evaluation import TechnologySearchResult
from schemas.exchange_api import (
    KNOWN_EXCHANGES,
    BidData,
    CreateListingRequest,
    DealData,
    ExchangeWebhook,
    Faults,
    ListingResponse,
    PaymentData,
    RejectDealRequest,
    SearchRequest,
    SimulatedBid,
    SimulatedDeal,
    SimulatedPayment,
    WebhookType,
    WithdrawListingRequest,
)
from schemas.transaction import ListingStatus

log = structlog.get_logger(__name__)

SCHEMA = "exchange_sandbox"
MAX_TOP_MATCHES = 3

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _check_exchange(exchange: str) -> None:
    if exchange not in KNOWN_EXCHANGES:
        raise SandboxError(
            404,
            "unknown_exchange",
            f"unknown exchange {exchange!r}; known: {', '.join(KNOWN_EXCHANGES)}",
            ["exchange"],
        )


def _listing(row: Record) -> ListingResponse:
    return ListingResponse(
        exchange=row["exchange"],
        listing_id=row["listing_id"],
        achievement_id=row["achievement_id"],
        status=ListingStatus(row["status"]),
        listed_at=row["listed_at"],
        publicity_ends_at=row["publicity_ends_at"],
    )


async def _locked_listing(conn: Connection, exchange: str, listing_id: str) -> Record:
    # Row lock: a deal and a withdrawal of one listing must not both succeed.
    row: Record | None = await conn.fetchrow(
        f"SELECT * FROM {SCHEMA}.listings WHERE listing_id = $1 AND exchange = $2 FOR UPDATE",
        listing_id,
        exchange,
    )
    if row is None:
        raise SandboxError(
            404, "listing_not_found", f"no listing {listing_id} on {exchange}", ["listing_id"]
        )
    return row


def _event(row: Record, type: WebhookType, **data: Any) -> ExchangeWebhook:
    return ExchangeWebhook(
        event_id=str(uuid.uuid4()),
        type=type,
        exchange=row["exchange"],
        listing_id=row["listing_id"],
        achievement_id=row["achievement_id"],
        occurred_at=datetime.now(UTC),
        **data,
    )


def _require_open(row: Record) -> None:
    if row["status"] == ListingStatus.DEALT:
        raise SandboxError(409, "listing_dealt", f"listing {row['listing_id']} is already dealt")
    if row["status"] != ListingStatus.OPEN:
        raise SandboxError(
            409, "listing_not_open", f"listing {row['listing_id']} is {row['status']}"
        )


def _stable_number(*parts: str) -> int:
    # Deterministic across processes (unlike hash()), so searches are reproducible.
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big")


def create_exchange_app(
    dsn: str,
    gateway_url: str,
    webhook_secrets: Mapping[str, str],
    faults: Faults | None = None,
) -> FastAPI:
    state = faults_mod.FaultState(faults)
    pools: list[Pool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(dsn)
        pools.append(pool)
        deliverer = WebhookDeliverer(pool, gateway_url, webhook_secrets, state)
        deliverer.start()
        log.info("sandbox.started", system="exchange", exchanges=list(KNOWN_EXCHANGES))
        try:
            yield
        finally:
            await deliverer.stop()
            pools.remove(pool)
            await pool.close()
            log.info("sandbox.stopped", system="exchange")

    app = FastAPI(
        title="Technology exchange API (sandbox)",
        description="Search, listings, withdrawals and rejected deals; every mutating call takes "
        "an Idempotency-Key header. The exchange reports bids, deals, payments and expiries as "
        "signed webhooks (see `webhooks`). /sandbox routes are test mode only.",
        lifespan=lifespan,
    )

    @app.webhooks.post("exchange-event")
    def exchange_event(body: ExchangeWebhook) -> None:
        """Sent to `{gateway}/webhooks/{exchange}` with X-Webhook-Id, X-Webhook-Timestamp and
        X-Webhook-Signature: v1=hex(HMAC-SHA256(the exchange's own secret,
        f"{timestamp}.{body}")). Delivered at least once: receivers deduplicate by event_id."""

    install_error_handlers(app)
    faults_mod.install(app, state, "exchange")

    def pool() -> Pool:
        return pools[0]

    def scope(request: Request) -> str:
        return f"{request.method} {request.url.path}"

    @app.post("/v1/exchanges/{exchange}/search", response_model=TechnologySearchResult)
    async def search(exchange: str, req: SearchRequest) -> TechnologySearchResult:
        _check_exchange(exchange)
        rows = await pool().fetch(
            f"SELECT title FROM {SCHEMA}.listings WHERE exchange = $1 AND field = $2"
            " ORDER BY listed_at DESC",
            exchange,
            req.field.value,
        )
        seed = _stable_number(exchange, req.field.value, req.title.strip().lower())
        demands = seed % 8
        matches = [f"Listing: {row['title']}" for row in rows[:MAX_TOP_MATCHES]]
        for i in range(min(demands, MAX_TOP_MATCHES - len(matches))):
            matches.append(f"Demand D-{(seed >> (8 * i)) % 100000:05d} ({req.field.value})")
        return TechnologySearchResult(
            similar_listings=len(rows), matching_demands=demands, top_matches=matches
        )

    @app.post("/v1/exchanges/{exchange}/listings", status_code=201)
    async def create_listing(
        exchange: str, req: CreateListingRequest, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            seq = await conn.fetchval(f"SELECT nextval('{SCHEMA}.listing_seq')")
            now = datetime.now(UTC)
            # The seller's exact end (never before the listing itself), or the older whole days.
            if req.publicity_ends_at is not None:
                publicity_ends_at = max(req.publicity_ends_at, now)
            else:
                publicity_ends_at = now + timedelta(days=req.publicity_days or 0)
            row = await conn.fetchrow(
                f"INSERT INTO {SCHEMA}.listings (listing_id, exchange, achievement_id, title,"
                " field, status, request, listed_at, publicity_ends_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
                f"{exchange.upper()}-L-{seq:06d}",
                exchange,
                req.achievement_id,
                req.title,
                req.field.value,
                ListingStatus.OPEN.value,
                req.model_dump(mode="json"),
                now,
                publicity_ends_at,
            )
            assert row is not None
            return _listing(row).model_dump(mode="json")

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 201)

    @app.get("/v1/exchanges/{exchange}/listings")
    async def list_listings(
        exchange: str, achievement_id: Annotated[str | None, Query()] = None
    ) -> list[ListingResponse]:
        _check_exchange(exchange)
        rows = await pool().fetch(
            f"SELECT * FROM {SCHEMA}.listings WHERE exchange = $1"
            " AND ($2::text IS NULL OR achievement_id = $2) ORDER BY listed_at, listing_id",
            exchange,
            achievement_id,
        )
        return [_listing(row) for row in rows]

    @app.post("/v1/exchanges/{exchange}/listings/{listing_id}/withdraw")
    async def withdraw_listing(
        exchange: str,
        listing_id: str,
        req: WithdrawListingRequest,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            row = await _locked_listing(conn, exchange, listing_id)
            if row["status"] == ListingStatus.DEALT:
                raise SandboxError(
                    409, "listing_dealt", f"listing {listing_id} is dealt and cannot be withdrawn"
                )
            if row["status"] != ListingStatus.OPEN:
                # Already withdrawn or expired: the goal is reached, so report its state.
                return _listing(row).model_dump(mode="json")
            now = datetime.now(UTC)
            updated = await conn.fetchrow(
                f"UPDATE {SCHEMA}.listings SET status = $2, closed_at = $3"
                " WHERE listing_id = $1 RETURNING *",
                listing_id,
                ListingStatus.WITHDRAWN.value,
                now,
            )
            assert updated is not None
            await conn.execute(
                f"INSERT INTO {SCHEMA}.withdrawals"
                " (exchange, listing_id, achievement_id, reason, withdrawn_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                exchange,
                listing_id,
                updated["achievement_id"],
                req.reason,
                now,
            )
            return _listing(updated).model_dump(mode="json")

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 200)

    @app.post(
        "/v1/exchanges/{exchange}/listings/{listing_id}/deals/{deal_id}/reject",
        response_model=ListingResponse,
    )
    async def reject_deal(
        exchange: str,
        listing_id: str,
        deal_id: str,
        req: RejectDealRequest,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        """The seller refuses a deal: the exchange drops it and the listing is open again.
        `deal_id` is the event_id of the deal's webhook. A deal that does not stand on the
        listing (already rejected, or never there) changes nothing: the answer is the listing
        as it is, so the seller always learns its status."""
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            row = await _locked_listing(conn, exchange, listing_id)
            deal = row["deal"]
            if row["status"] != ListingStatus.DEALT or deal is None or deal["deal_id"] != deal_id:
                return _listing(row).model_dump(mode="json")
            now = datetime.now(UTC)
            updated = await conn.fetchrow(
                f"UPDATE {SCHEMA}.listings SET status = $2, deal = NULL, closed_at = NULL"
                " WHERE listing_id = $1 RETURNING *",
                listing_id,
                ListingStatus.OPEN.value,
            )
            assert updated is not None
            await conn.execute(
                f"INSERT INTO {SCHEMA}.deal_rejections"
                " (exchange, listing_id, achievement_id, deal_id, deal, reason, rejected_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                exchange,
                listing_id,
                updated["achievement_id"],
                deal_id,
                deal,
                req.reason,
                now,
            )
            return _listing(updated).model_dump(mode="json")

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 200)

    # --- test-mode triggers: the demo and the tests act as buyers through these ---

    base = "/sandbox/exchanges/{exchange}/listings/{listing_id}"

    @app.post(base + "/bids", status_code=202)
    async def simulate_bid(
        exchange: str,
        listing_id: str,
        req: SimulatedBid,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            row = await _locked_listing(conn, exchange, listing_id)
            _require_open(row)
            event = _event(row, WebhookType.BID, bid=BidData(bidder=req.bidder, amount=req.amount))
            await enqueue(conn, event)
            return {"event_id": event.event_id}

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 202)

    @app.post(base + "/deal", status_code=202)
    async def simulate_deal(
        exchange: str,
        listing_id: str,
        req: SimulatedDeal,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            row = await _locked_listing(conn, exchange, listing_id)
            _require_open(row)
            # Like a real exchange, no deal before the publicity period is over (item 8);
            # the workflow enforces it again on its own clock.
            if datetime.now(UTC) < row["publicity_ends_at"]:
                raise SandboxError(
                    409,
                    "publicity_period",
                    f"publicity of {listing_id} runs until {row['publicity_ends_at'].isoformat()}",
                )
            deal = DealData(
                buyer=req.buyer,
                contract_type=req.contract_type,
                amount=req.amount,
                instalments=req.instalments,
                brokerage=req.brokerage,
            )
            event = _event(row, WebhookType.DEAL, deal=deal)
            # The deal's id is its webhook's event id: the seller rejects a deal by it.
            await conn.execute(
                f"UPDATE {SCHEMA}.listings SET status = $2, deal = $3, closed_at = $4"
                " WHERE listing_id = $1",
                listing_id,
                ListingStatus.DEALT.value,
                {**deal.model_dump(mode="json"), "deal_id": event.event_id},
                datetime.now(UTC),
            )
            await enqueue(conn, event)
            return {"event_id": event.event_id}

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 202)

    @app.post(base + "/payments", status_code=202)
    async def simulate_payment(
        exchange: str,
        listing_id: str,
        req: SimulatedPayment,
        request: Request,
        key: IdempotencyKey = None,
    ) -> JSONResponse:
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            row = await _locked_listing(conn, exchange, listing_id)
            if row["status"] != ListingStatus.DEALT or row["deal"] is None:
                raise SandboxError(
                    409, "listing_not_dealt", f"listing {listing_id} has no deal to pay for"
                )
            # Refuse what the receiving side would refuse anyway, with the field named.
            if req.costs > req.amount:
                raise SandboxError(
                    422, "validation_error", "costs exceed the payment amount", ["costs"]
                )
            if req.instalment > int(row["deal"]["instalments"]):
                raise SandboxError(
                    422,
                    "validation_error",
                    "instalment is beyond the deal's number of instalments",
                    ["instalment"],
                )
            payment = PaymentData(instalment=req.instalment, amount=req.amount, costs=req.costs)
            event = _event(row, WebhookType.PAYMENT, payment=payment)
            await enqueue(conn, event)
            return {"event_id": event.event_id}

        return await idempotent(pool(), SCHEMA, key, scope(request), req, effect, 202)

    @app.post(base + "/expire", status_code=202)
    async def simulate_expiry(
        exchange: str, listing_id: str, request: Request, key: IdempotencyKey = None
    ) -> JSONResponse:
        _check_exchange(exchange)

        async def effect(conn: Connection) -> JSON:
            row = await _locked_listing(conn, exchange, listing_id)
            _require_open(row)
            await conn.execute(
                f"UPDATE {SCHEMA}.listings SET status = $2, closed_at = $3 WHERE listing_id = $1",
                listing_id,
                ListingStatus.EXPIRED.value,
                datetime.now(UTC),
            )
            event = _event(row, WebhookType.LISTING_EXPIRED)
            await enqueue(conn, event)
            return {"event_id": event.event_id}

        return await idempotent(pool(), SCHEMA, key, scope(request), None, effect, 202)

    @app.get("/sandbox/records")
    async def records() -> dict[str, Any]:
        listings: dict[str, dict[str, int]] = {}
        withdrawals: dict[str, dict[str, int]] = {}
        for table, target in (("listings", listings), ("withdrawals", withdrawals)):
            rows = await pool().fetch(
                f"SELECT achievement_id, exchange, count(*) AS n FROM {SCHEMA}.{table}"
                " GROUP BY achievement_id, exchange"
            )
            for row in rows:
                target.setdefault(row["achievement_id"], {})[row["exchange"]] = row["n"]
        webhooks = {"pending": 0, "delivered": 0, "failed": 0}
        for row in await pool().fetch(
            f"SELECT status, count(*) AS n FROM {SCHEMA}.webhook_outbox GROUP BY status"
        ):
            webhooks[row["status"]] = row["n"]
        return {"listings": listings, "withdrawals": withdrawals, "webhooks": webhooks}

    @app.get("/sandbox/webhooks")
    async def webhooks(
        listing_id: Annotated[str | None, Query()] = None,
    ) -> list[dict[str, Any]]:
        """Outbox state per event, for operators and tests (no bodies)."""
        rows = await pool().fetch(
            f"SELECT event_id, event_type, exchange, listing_id, achievement_id, status,"
            f" attempts, last_status, created_at, delivered_at FROM {SCHEMA}.webhook_outbox"
            " WHERE ($1::text IS NULL OR listing_id = $1) ORDER BY created_at",
            listing_id,
        )
        return [
            {
                **dict(row),
                "created_at": row["created_at"].isoformat(),
                "delivered_at": row["delivered_at"].isoformat() if row["delivered_at"] else None,
            }
            for row in rows
        ]

    return app
