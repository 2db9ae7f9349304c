"""4. Parked capacity: N lifecycles held as scientific resources (no intended modes, municipal
funding) waiting on the mandatory-listing timer; worker RSS, server database bytes per parked
lifecycle, and time to park them, each against the bare floor parked the same way.

The mass wake-up is not measured: the mandatory listing falls due at the end of the deadline
day UTC (workflows/rules.py `mandatory_due_at`), and a deadline cannot be earlier than
today without firing at once, so on the dev server's real clock it fires only at the next UTC
midnight. See docs/performance.md for the engine change that would make it measurable.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any

from bench import driver
from bench.bare import PARKED_STAGE, BareInput, BareWorkflow
from bench.harness import Absolute, Figure, Result, Size
from bench.shape import counts, script_of
from bench.stack import Stack, WorkerProcess, open_stack

# 20,000 is the size; on a 2-core machine the engine parks ~10 a second, so the full
# run parks 2,000 (about 7 minutes for floor and engine). ACHIEVEMENTS_BENCH_PARKED=20000
# asks for the whole 20,000 (over an hour here).
SIZES = {"tiny": 10, "full": int(os.environ.get("ACHIEVEMENTS_BENCH_PARKED", "2000"))}
CONCURRENCY = 64
LIMIT_S = {"tiny": 120.0, "full": 5400.0}
MB, KB = 1024 * 1024, 1024


def _end_of_day(day: date) -> datetime:
    """When the mandatory listing falls due: the end of the deadline day, UTC (as the engine)."""
    return datetime.combine(day, clock.max, tzinfo=UTC)


async def _wait_count(count: Any, n: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while (seen := await count()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen} of {n} parked after {limit:.0f} s")
        await asyncio.sleep(0.5)


async def _park_engine(stack: Stack, w: WorkerProcess, n: int, tag: str, limit: float) -> float:
    today = datetime.now(UTC).date()
    deadline = today + timedelta(days=3 * 365)
    before = await stack.pool.fetchval(
        "SELECT count(*) FROM lifecycle_events WHERE type = 'held_as_resource'"
    )
    t0 = time.perf_counter()
    await driver.bounded(
        n,
        CONCURRENCY,
        lambda i: driver.start(
            stack.client, w.task_queue, driver.parked(i, tag, today, deadline), driver.BENCH_POLICY
        ),
    )

    async def parked() -> int:
        # The last event a parking lifecycle records before it starts its timer.
        return int(
            await stack.pool.fetchval(
                "SELECT count(*) FROM lifecycle_events WHERE type = 'held_as_resource'"
            )
        ) - int(before)

    await _wait_count(parked, n, limit)
    return time.perf_counter() - t0


async def _park_bare(
    stack: Stack, w: WorkerProcess, n: int, tag: str, script: str, due: datetime, limit: float
) -> float:
    t0 = time.perf_counter()
    seconds = (due - datetime.now(UTC)).total_seconds()
    await driver.bounded(
        n,
        CONCURRENCY,
        lambda i: stack.client.start_workflow(
            BareWorkflow.run,
            BareInput(script=script + "Z", timer_seconds=seconds, mark_parked=True),
            id=f"bare-parked-{tag}-{i}",
            task_queue=w.task_queue,
        ),
    )
    query = f'AchievementStage = "{PARKED_STAGE}" AND TaskQueue = "{w.task_queue}"'

    async def parked() -> int:
        return (await stack.client.count_workflows(query)).count

    await _wait_count(parked, n, limit)
    return time.perf_counter() - t0


async def measure(size: Size) -> Result:
    n, limit = SIZES[size], LIMIT_S[size]
    tag = uuid.uuid4().hex[:6].upper()
    started = time.perf_counter()
    today = datetime.now(UTC).date()
    deadline = today + timedelta(days=3 * 365)
    async with open_stack(http=True) as stack:
        # The shape of one parked lifecycle, from its history.
        async with stack.worker("engine") as w:
            sc = driver.parked(0, f"P{tag}", today, deadline)
            h = await driver.start(stack.client, w.task_queue, sc, driver.BENCH_POLICY)
            await driver.poll(
                lambda: driver.state(h),
                lambda s: s.waiting is not None and not s.outbox,
                60,
            )
            await asyncio.sleep(0.5)
            script = await script_of(h)  # type: ignore[arg-type]
            await h.terminate("shape recorded")
        due = _end_of_day(deadline)
        # Floor first: a server already holding the engine's workflows would slow it.
        db0 = stack.db_bytes()
        async with stack.worker("bare") as w:
            floor_s = await _park_bare(stack, w, n, tag, script, due, limit)
            await asyncio.sleep(2)
            floor_rss = w.rss_bytes()
        db1 = stack.db_bytes()
        async with stack.worker("engine") as w:
            engine_s = await _park_engine(stack, w, n, tag, limit)
            await asyncio.sleep(2)
            engine_rss = w.rss_bytes()
        db2 = stack.db_bytes()
    engine_db, floor_db = (db2 - db1) / n, (db1 - db0) / n
    return Result(
        benchmark="parked",
        size=size,
        figures=[
            Figure(
                f"time to park {n:,}",
                "s",
                engine_s,
                floor_s,
                None,
                "lower",
                note=f"starts {CONCURRENCY} at a time; per lifecycle: "
                + ", ".join(f"{v} {k}" for k, v in counts(script).items()),
            ),
            Figure(
                f"worker RSS at {n:,} parked", "MB", engine_rss / MB, floor_rss / MB, None, "lower"
            ),
            Figure(
                "server database per parked lifecycle",
                "KB",
                engine_db / KB,
                floor_db / KB,
                None,
                "lower",
                note="dev server SQLite file + WAL + SHM growth ÷ N",
            ),
        ],
        absolutes=[
            Absolute(f"worker RSS at {n:,} parked", "MB", engine_rss / MB, 300),
            Absolute("server database per parked lifecycle", "KB", engine_db / KB, 30),
        ],
        details={
            "parked": n,
            "script": script,
            "shape": counts(script),
            "deadline": deadline.isoformat(),
            "mandatory_listing_due": due.isoformat(),
            "db_bytes": {"start": db0, "after_floor": db1, "after_engine": db2},
            "mass_wake_up": "not measured: the mandatory listing falls due at the end of the "
            "deadline day UTC, so it cannot fire within a bounded run on the real clock",
            "note": "mass wake-up not measured (the listing clock fires at UTC midnight of the "
            "deadline day); parking only",
        },
        seconds=time.perf_counter() - started,
    )
