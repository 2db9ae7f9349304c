"""3. Signal-to-state latency: a signed exchange webhook (a bid) through the gateway until the
workflow's query shows it (its event id among the applied ones), p50/p99 over sequential
events; floor: a client signal to a parked bare workflow until its query shows it."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx

from bench import driver
from bench.bare import BareWorkflow
from bench.floor_input import BareInput
from bench.harness import Figure, Result, Size
from bench.stack import open_stack
from gateway.signing import sign
from schemas.lifecycle import Stage
from workflows.lifecycle import AchievementLifecycle

SIZES = {"tiny": (1, 10), "full": (20, 300)}  # (lifecycles, events)
LIMIT_S = 30.0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _until_seen(read: Any, event_id: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while event_id not in await read():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event_id} never showed in the query")
        await asyncio.sleep(0.002)


async def measure(size: Size) -> Result:
    k, events = SIZES[size]
    tag = uuid.uuid4().hex[:6].upper()
    today = datetime.now(UTC).date()
    started = time.perf_counter()
    engine: list[float] = []
    floor: list[float] = []
    async with open_stack(http=True) as stack:
        async with stack.worker("engine") as w, httpx.AsyncClient(timeout=30) as http:
            # K lifecycles listed and waiting for a deal (the transaction stage).
            handles = []
            for i in range(k):
                sc = driver.common_path(i, tag, today)
                h = await driver.start(stack.client, w.task_queue, sc, driver.BENCH_POLICY)
                await driver.poll(
                    partial(driver.state, h), lambda s: s.stage is Stage.EVALUATION, LIMIT_S
                )
                for review in sc.reviews():
                    await h.execute_update(AchievementLifecycle.submit_review, review)
                st = await driver.poll(
                    partial(driver.state, h), lambda s: bool(s.listings), LIMIT_S
                )
                handles.append((sc.disclosure.achievement_id, h, st.listings[0]))
            for n in range(events):
                aid, h, listing = handles[n % k]
                event_id = f"bid-{tag}-{n}"
                body = json.dumps(
                    {
                        "event_id": event_id,
                        "type": "bid",
                        "exchange": listing.exchange,
                        "listing_id": listing.listing_id,
                        "achievement_id": aid,
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "bid": {"bidder": "Synthetic Bidder (bench)", "amount": "1000.00"},
                    }
                ).encode()
                # Each exchange signs with its own secret and posts to its own path.
                secret = stack.settings.webhook_secret(listing.exchange).get_secret_value()
                url = f"{stack.settings.gateway_url}/webhooks/{listing.exchange}"
                t0 = time.perf_counter()
                r = await http.post(
                    url,
                    content=body,
                    headers={"Content-Type": "application/json", **sign(secret, body)},
                )
                if r.status_code != 202:
                    raise RuntimeError(f"webhook -> {r.status_code}: {r.text[:200]}")

                async def seen(h: Any = h) -> list[str]:
                    return (await driver.state(h)).seen_event_ids

                await _until_seen(seen, event_id)
                engine.append(time.perf_counter() - t0)
        async with stack.worker("bare") as w:
            bares = [
                await stack.client.start_workflow(
                    BareWorkflow.run,
                    BareInput(script="Z"),
                    id=f"bare-latency-{tag}-{i}",
                    task_queue=w.task_queue,
                )
                for i in range(k)
            ]
            for bh in bares:
                await driver.poll(
                    partial(driver.progress, bh), lambda p: p["waiting"] == "parked", LIMIT_S
                )
            for n in range(events):
                bh = bares[n % k]
                event_id = f"sig-{tag}-{n}"
                t0 = time.perf_counter()
                await bh.signal(BareWorkflow.bare_signal, event_id)

                async def bare_seen(bh: Any = bh) -> list[str]:
                    return list((await driver.progress(bh))["seen"])

                await _until_seen(bare_seen, event_id)
                floor.append(time.perf_counter() - t0)
            for bh in bares:
                await bh.terminate("benchmark over")
    ms = 1000.0
    return Result(
        benchmark="latency",
        size=size,
        figures=[
            Figure(
                "signal-to-state p50",
                "ms",
                _pct(engine, 50) * ms,
                _pct(floor, 50) * ms,
                None,
                "lower",
                floor_label="bare signal round trip (client signal → query)",
                note=f"{events} sequential bid webhooks over {k} lifecycles in transaction",
            ),
            Figure(
                "signal-to-state p99",
                "ms",
                _pct(engine, 99) * ms,
                _pct(floor, 99) * ms,
                1.5,
                "lower",
                floor_label="bare signal round trip (client signal → query)",
            ),
        ],
        details={
            "events": events,
            "lifecycles": k,
            "path": "signed webhook POST /webhooks/{exchange} (bid) → gateway signal → "
            "state_query shows the event id; query polled every 2 ms",
            "engine_ms": {"mean": statistics.fmean(engine) * ms, "max": max(engine) * ms},
            "floor_ms": {"mean": statistics.fmean(floor) * ms, "max": max(floor) * ms},
        },
        seconds=time.perf_counter() - started,
    )
