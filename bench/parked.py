"""4. Parked capacity: N lifecycles held as scientific resources (no intended modes, municipal
funding) waiting on the mandatory-listing timer; worker RSS, server database bytes per parked
lifecycle, and time to park them, each against the bare floor parked the same way.

Then the mass wake-up: N more of each are parked with the listing falling due at one instant a
little after they can all be parked (the policy's `mandatory_listing_due_time` on a deadline of
that day), and the figure is how fast the worker gets all of them through their wake-up work
(the listing on the exchange and its events recorded) once the instant passes. The floor's
script is a woken lifecycle's own history, its mandatory timer firing at the same instant.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

from bench import driver
from bench.bare import PARKED_STAGE, WOKEN_STAGE, BareInput, BareWorkflow
from bench.driver import BENCH_POLICY
from bench.harness import Absolute, Figure, Result, Size
from bench.shape import counts, script_of
from bench.stack import Stack, WorkerProcess, open_stack
from schemas.policy import Policy

# 20,000 is the size; on a 2-core machine the engine parks ~10 a second, so the full
# run parks 2,000 (about 7 minutes for floor and engine). ACHIEVEMENTS_BENCH_PARKED=20000
# asks for the whole 20,000 (over an hour here).
SIZES = {"tiny": 10, "full": int(os.environ.get("ACHIEVEMENTS_BENCH_PARKED", "2000"))}
CONCURRENCY = 64
_POLL_S = 0.25
# The wake-up instant: the measured time to park N, this much longer, plus a margin.
_WAKE_SLACK, _WAKE_MARGIN_S = 1.3, 15.0
LIMIT_S = {"tiny": 120.0, "full": 5400.0}
MB, KB = 1024 * 1024, 1024


def _end_of_day(day: date) -> datetime:
    """When the mandatory listing falls due by default: the end of the deadline day, UTC."""
    return datetime.combine(day, clock.max, tzinfo=UTC)


def _due_at(at: datetime) -> tuple[date, Policy]:
    """A deadline and a policy under which the mandatory listing falls due at `at`."""
    at = at.astimezone(UTC)
    time_of_day = at.time().replace(tzinfo=None)
    return at.date(), BENCH_POLICY.model_copy(update={"mandatory_listing_due_time": time_of_day})


async def _count_events(stack: Stack, type: str, tag: str) -> int:
    return int(
        await stack.pool.fetchval(
            "SELECT count(*) FROM lifecycle_events WHERE type = $1 AND achievement_id LIKE $2",
            type,
            f"SYN-{tag}-%",
        )
    )


async def _count_bare(stack: Stack, w: WorkerProcess, stage: str) -> int:
    query = f'AchievementStage = "{stage}" AND TaskQueue = "{w.task_queue}"'
    return (await stack.client.count_workflows(query)).count


async def _wake(
    park: Callable[[], Awaitable[object]],
    parked: Callable[[], Awaitable[int]],
    woken: Callable[[], Awaitable[int]],
    n: int,
    due: datetime,
    limit: float,
) -> float | None:
    """Park n due at `due`, wait for the instant, return the seconds until all n are through.

    None when parking overran the instant (some fired before the rest were parked).
    """
    await park()
    await _wait_count(parked, n, limit)
    if datetime.now(UTC) >= due:
        return None
    await asyncio.sleep((due - datetime.now(UTC)).total_seconds())
    t0 = time.perf_counter()
    await _wait_count(woken, n, limit)
    return time.perf_counter() - t0 - _POLL_S / 2  # the last poll's mean lag


async def _wait_count(count: Callable[[], Awaitable[int]], n: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while (seen := await count()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen} of {n} after {limit:.0f} s")
        await asyncio.sleep(_POLL_S)


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
    await _wait_count(lambda: _count_bare(stack, w, PARKED_STAGE), n, limit)
    return time.perf_counter() - t0


async def _wake_script(stack: Stack, parked_script: str, tag: str, today: date) -> str:
    """The floor's wake-up script: a lifecycle woken by its mandatory timer, from its history."""
    assert parked_script.endswith("T"), parked_script
    async with stack.worker("engine") as w:
        deadline, policy = _due_at(datetime.now(UTC) + timedelta(seconds=8))
        sc = driver.parked(0, f"Q{tag}", today, deadline)
        h = await driver.start(stack.client, w.task_queue, sc, policy)
        await driver.poll(
            lambda: driver.state(h),
            lambda s: bool(s.listings) and s.waiting is not None and not s.outbox,
            60,
        )
        await asyncio.sleep(0.5)
        woken = await script_of(h)  # type: ignore[arg-type]
        await h.terminate("shape recorded")
    if not woken.startswith(parked_script):
        raise RuntimeError(f"woken {woken!r} does not extend parked {parked_script!r}")
    return parked_script[:-1] + "W" + woken[len(parked_script) :] + "Z"


async def _wake_bare(
    stack: Stack, script: str, n: int, tag: str, park_s: float, limit: float
) -> float | None:
    async with stack.worker("bare") as w:
        due = datetime.now(UTC) + timedelta(seconds=park_s * _WAKE_SLACK + _WAKE_MARGIN_S)
        return await _wake(
            lambda: driver.bounded(
                n,
                CONCURRENCY,
                lambda i: stack.client.start_workflow(
                    BareWorkflow.run,
                    BareInput(script=script, mark_parked=True, wake_at=due),
                    id=f"bare-wake-{tag}-{i}",
                    task_queue=w.task_queue,
                ),
            ),
            lambda: _count_bare(stack, w, PARKED_STAGE),
            lambda: _count_bare(stack, w, WOKEN_STAGE),
            n,
            due,
            limit,
        )


async def _wake_engine(
    stack: Stack, n: int, tag: str, today: date, park_s: float, limit: float
) -> float | None:
    async with stack.worker("engine") as w:
        due = datetime.now(UTC) + timedelta(seconds=park_s * _WAKE_SLACK + _WAKE_MARGIN_S)
        deadline, policy = _due_at(due)
        return await _wake(
            lambda: driver.bounded(
                n,
                CONCURRENCY,
                lambda i: driver.start(
                    stack.client, w.task_queue, driver.parked(i, tag, today, deadline), policy
                ),
            ),
            lambda: _count_events(stack, "held_as_resource", tag),
            # The last thing a woken lifecycle does: its listing recorded.
            lambda: _count_events(stack, "listed", tag),
            n,
            due,
            limit,
        )


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
        # The mass wake-up, each side on a fresh worker with nothing else parked in its cache.
        wake_script = await _wake_script(stack, script, tag, today)
        floor_wake = await _wake_bare(stack, wake_script, n, tag, floor_s, limit)
        engine_wake = await _wake_engine(stack, n, f"K{tag}", today, engine_s, limit)
    engine_db, floor_db = (db2 - db1) / n, (db1 - db0) / n
    figures = [
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
        Figure(f"worker RSS at {n:,} parked", "MB", engine_rss / MB, floor_rss / MB, None, "lower"),
        Figure(
            "server database per parked lifecycle",
            "KB",
            engine_db / KB,
            floor_db / KB,
            None,
            "lower",
            note="dev server SQLite file + WAL + SHM growth ÷ N",
        ),
    ]
    if engine_wake and floor_wake:
        figures.append(
            Figure(
                f"mass wake-up of {n:,} at one instant",
                "lifecycles/s",
                n / engine_wake,
                n / floor_wake,
                None,
                "higher",
                floor_label="bare workflow, a woken lifecycle's shape, its timer at one instant",
                note="from the instant until the last one's listing is recorded; per woken "
                "lifecycle: " + ", ".join(f"{v} {k}" for k, v in counts(wake_script).items()),
            )
        )
    return Result(
        benchmark="parked",
        size=size,
        figures=figures,
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
            "wake_script": wake_script,
            "wake_seconds": {"engine": engine_wake, "floor": floor_wake},
            "mass_wake_up": "measured"
            if engine_wake and floor_wake
            else "not measured: parking overran the instant the listings fell due",
        },
        seconds=time.perf_counter() - started,
    )
