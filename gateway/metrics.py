"""Prometheus metrics of the lifecycles, served by the gateway at /metrics.

The same figures as the overview page (activities/overview.py), per institution and stage:
how many lifecycles, how many overdue, how many need a person. Computed from PostgreSQL at
scrape time by one grouped count, cached for a few seconds so several scrapers (or a
Prometheus pair) cost one query. The SDK's own metrics stay on the worker's metrics port.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from activities.overview import Figures, figures
from gateway.dependencies import Context

log = structlog.get_logger(__name__)
CACHE_SECONDS = 15.0
LABELS = ["institution", "stage"]
# name → (help, which figure): the Grafana dashboard in deploy/grafana queries these names.
GAUGES = {
    "achievements_lifecycles": ("Lifecycles per institution and stage", "lifecycles"),
    "achievements_lifecycles_overdue": (
        "Lifecycles waiting past their deadline (waiting_until < now)",
        "overdue",
    ),
    "achievements_lifecycles_needing_person": (
        "Lifecycles a person must act on (NeedsAttentionSince is set)",
        "needs_person",
    ),
}

router = APIRouter(tags=["metrics"])


class LifecycleFigures(Collector):
    """Hands the last figures read to prometheus_client; refreshed before each exposition."""

    def __init__(self) -> None:
        self.figures: list[Figures] = []
        self.read_at = 0.0  # monotonic time of the last read; 0: never
        self.lock = asyncio.Lock()

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with self.lock:  # concurrent scrapes share one query
            if time.monotonic() - self.read_at < CACHE_SECONDS and self.read_at:
                return
            self.figures = await figures(pool, datetime.now(UTC), None)
            self.read_at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, attribute) in GAUGES.items():
            family = GaugeMetricFamily(name, help_text, labels=LABELS)
            for f in self.figures:
                family.add_metric([f.institution, f.stage], getattr(f, attribute))
            yield family


def registry_of(request: Request) -> tuple[CollectorRegistry, LifecycleFigures]:
    """One registry per gateway app (not the process-global one): tests run several apps."""
    state = request.app.state
    if not hasattr(state, "lifecycle_metrics"):
        collector = LifecycleFigures()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        state.lifecycle_metrics = (registry, collector)
    found: tuple[CollectorRegistry, LifecycleFigures] = state.lifecycle_metrics
    return found


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, ctx: Context) -> Response:
    token = ctx.settings.metrics_token
    if (token is None or not token.get_secret_value()) and ctx.settings.environment != "dev":
        # Per-institution counts are no anonymous read outside dev: a scraper shows a token.
        raise HTTPException(403, "metrics are off: set ACHIEVEMENTS_METRICS_TOKEN for scrapers")
    if token is not None and token.get_secret_value():  # "" is unset, as for the codec token
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise HTTPException(
                401, "metrics need the scrape token", {"WWW-Authenticate": "Bearer"}
            )
    registry, collector = registry_of(request)
    await collector.refresh(ctx.need_pool())
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
