"""4. Parked capacity: N lifecycles held as scientific resources (no intended modes, municipal
funding) waiting on the mandatory-listing timer; worker RSS, server database bytes per parked
lifecycle, and time to park them, each against the bare floor parked the same way.

4b. The mass wake-up of the same N: their listing falls due at one instant a little after they
can all be parked (the policy's `mandatory_listing_due_time` on a deadline of that day), and the
figure is how fast the worker that parked them gets all of them through their wake-up work (the
listing on the exchange and its events recorded) once the instant passes. The floor's script is
a woken lifecycle's own history, its timer firing at its own instant. A parked lifecycle's
history does not depend on when its timer fires, so one set of N serves both figures: each side
parks 20,000 once instead of twice (2 h 22 min for both sides on 2 cores, measured).

The instant is set from a pilot: a few lifecycles parked first on a worker of their own, their
rate stretched to N with some slack. Parking and waking are counted as the parties hear them,
from the appends' NOTIFYs on one LISTEN connection (bench/events.py): the engine's
`held_as_resource` and `listed` events, the floor's appends before its parking timer and after
it. Neither side is queried or counted through the server's visibility store, whose counts over
a growing table would load the server under measurement.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

from bench import driver
from bench.bare import BareWorkflow
from bench.driver import BENCH_POLICY
from bench.events import Listener, listening, type_key
from bench.floor_input import BareInput
from bench.harness import Absolute, Figure, Result, Size
from bench.shape import counts, script_of
from bench.stack import Stack, WorkerProcess, open_stack
from schemas.events import EventType
from schemas.policy import Policy
from workflows.ids import workflow_id

# The size. ACHIEVEMENTS_BENCH_PARKED sets another N for `--size full`.
SIZES = {"tiny": 10, "full": int(os.environ.get("ACHIEVEMENTS_BENCH_PARKED", "20000"))}
CONCURRENCY = 64
_POLL_S = 0.25
# The pilot: this share of N (within bounds) parked first to learn the rate of parking.
_PILOT_SHARE, _PILOT_MIN, _PILOT_MAX = 0.02, 5, 400
# The instant: the pilot's rate stretched to N, this much longer, plus a margin. A run that
# parks slower than that reports the wake-up as not measured rather than a wrong figure.
_WAKE_SLACK, _WAKE_MARGIN_S = 1.25, 20.0
MB, KB = 1024 * 1024, 1024


def limit_for(n: int) -> float:
    """How long any wait may take before the run fails as stuck: generous, linear in N (a
    loaded 2-core machine parked 400 engine lifecycles at about 1.3 a second)."""
    return 300.0 + n * 1.5


def _end_of_day(day: date) -> datetime:
    """When the mandatory listing falls due by default: the end of the deadline day, UTC."""
    return datetime.combine(day, clock.max, tzinfo=UTC)


def _due_at(at: datetime) -> tuple[date, Policy]:
    """A deadline and a policy under which the mandatory listing falls due at `at`."""
    at = at.astimezone(UTC)
    time_of_day = at.time().replace(tzinfo=None)
    return at.date(), BENCH_POLICY.model_copy(update={"mandatory_listing_due_time": time_of_day})


async def _wait_count(count: Callable[[], int], n: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while (seen := count()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen} of {n} after {limit:.0f} s")
        await asyncio.sleep(_POLL_S)


@dataclass
class Side:
    """How one side (engine or floor) parks lifecycles and how its progress is counted."""

    mode: str
    # (worker, index, tag, instant or None for the default 3-year deadline)
    start: Callable[[WorkerProcess, int, str, datetime | None], Awaitable[object]]
    # How many of a batch (tag) are parked, and woken; `pilot`: parked on the 3-year timer.
    parked: Callable[[str, bool], int]
    woken: Callable[[str], int]


@dataclass
class Measured:
    park_s: float
    park_cpu_s: float
    rss: int
    db: int
    wake_s: float | None
    wake_cpu_s: float
    pilot_rate: float
    due_in_s: float


async def _park(side: Side, w: WorkerProcess, n: int, tag: str, due: datetime | None) -> float:
    t0 = time.perf_counter()
    await driver.bounded(n, CONCURRENCY, lambda i: side.start(w, i, tag, due))
    await _wait_count(lambda: side.parked(tag, due is None), n, limit_for(n))
    return time.perf_counter() - t0


async def _measure(stack: Stack, side: Side, n: int, tag: str) -> Measured:
    """Pilot, then park N due at one instant (time, RSS, database), then wake them all."""
    pilot = max(_PILOT_MIN, min(_PILOT_MAX, int(n * _PILOT_SHARE)))
    async with stack.worker(side.mode) as w:
        pilot_s = await _park(side, w, pilot, f"{tag}P", None)
    rate = pilot / pilot_s
    db0 = stack.db_bytes()
    async with stack.worker(side.mode) as w:
        due_in = n / rate * _WAKE_SLACK + _WAKE_MARGIN_S
        due = datetime.now(UTC) + timedelta(seconds=due_in)
        cpu0 = w.cpu_seconds()
        park_s = await _park(side, w, n, tag, due)
        await asyncio.sleep(2)
        park_cpu = w.cpu_seconds() - cpu0
        rss = w.rss_bytes()
        db = stack.db_bytes() - db0
        wake_s: float | None = None
        cpu0 = w.cpu_seconds()
        if datetime.now(UTC) < due and side.woken(tag) == 0:
            await asyncio.sleep((due - datetime.now(UTC)).total_seconds())
            t0 = time.perf_counter()
            await _wait_count(lambda: side.woken(tag), n, limit_for(n))
            wake_s = time.perf_counter() - t0 - _POLL_S / 2  # the last count's mean lag
        wake_cpu = w.cpu_seconds() - cpu0
    return Measured(park_s, park_cpu, rss, db, wake_s, wake_cpu, rate, due_in)


def _engine(stack: Stack, listener: Listener, today: date) -> Side:
    three_years = today + timedelta(days=3 * 365)

    async def start(w: WorkerProcess, i: int, tag: str, due: datetime | None) -> object:
        deadline, policy = (three_years, BENCH_POLICY) if due is None else _due_at(due)
        sc = driver.parked(i, tag, today, deadline)
        return await driver.start(stack.client, w.task_queue, sc, policy)

    def group(tag: str) -> str:
        return workflow_id(f"SYN-{tag}-0").rpartition("-")[0]

    return Side(
        "engine",
        start,
        # The last event a parking lifecycle records before it starts its timer; the last
        # thing a woken one does: its listing recorded.
        lambda tag, pilot: listener.count(group(tag), type_key(EventType.HELD_AS_RESOURCE.value)),
        lambda tag: listener.count(group(tag), type_key(EventType.LISTED.value)),
    )


def _bare(
    stack: Stack, listener: Listener, script: str, wake_script: str, due_forever: datetime
) -> Side:
    async def start(w: WorkerProcess, i: int, tag: str, due: datetime | None) -> object:
        if due is None:  # the pilot: parked on the 3-year timer, as the engine's pilot is
            seconds = (due_forever - datetime.now(UTC)).total_seconds()
            arg = BareInput(script=script + "Z", timer_seconds=seconds, mark_parked=True)
        else:
            arg = BareInput(script=wake_script, mark_parked=True, wake_at=due)
        arg.notify = True
        return await stack.client.start_workflow(
            BareWorkflow.run, arg, id=f"bare-parked-{tag}-{i}", task_queue=w.task_queue
        )

    return Side(
        "bare",
        start,
        # The append before the parking token (bench.floor_input.append_labels): `Z` ends the
        # pilot's script, `W` is the main batch's timer to the instant, `Z` follows its wake-up.
        lambda tag, pilot: listener.count(f"bare-parked-{tag}", type_key("Z" if pilot else "W")),
        lambda tag: listener.count(f"bare-parked-{tag}", type_key("Z")),
    )


async def _parked_script(stack: Stack, tag: str, today: date, deadline: date) -> str:
    """The shape of one parked lifecycle, from its history."""
    async with stack.worker("engine") as w:
        sc = driver.parked(0, f"P{tag}", today, deadline)
        h = await driver.start(stack.client, w.task_queue, sc, driver.BENCH_POLICY)
        await driver.poll(
            lambda: driver.state(h), lambda s: s.waiting is not None and not s.outbox, 60
        )
        await asyncio.sleep(0.5)
        script = await script_of(h, queues=True)  # type: ignore[arg-type]
        await h.terminate("shape recorded")
    return script


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
        woken = await script_of(h, queues=True)  # type: ignore[arg-type]
        await h.terminate("shape recorded")
    if not woken.startswith(parked_script):
        raise RuntimeError(f"woken {woken!r} does not extend parked {parked_script!r}")
    return parked_script[:-1] + "W" + woken[len(parked_script) :] + "Z"


async def measure(size: Size) -> Result:
    return await run(SIZES[size], size)


async def run(n: int, size: Size = "tiny") -> Result:
    tag = uuid.uuid4().hex[:6].upper()
    started = time.perf_counter()
    today = datetime.now(UTC).date()
    deadline = today + timedelta(days=3 * 365)
    async with open_stack(http=True) as stack, listening(stack.dsn) as listener:
        script = await _parked_script(stack, tag, today, deadline)
        wake_script = await _wake_script(stack, script, tag, today)
        # Floor first: a server already holding the engine's workflows would slow it.
        bare = _bare(stack, listener, script, wake_script, _end_of_day(deadline))
        floor = await _measure(stack, bare, n, tag)
        engine = await _measure(stack, _engine(stack, listener, today), n, f"K{tag}")
    figures = [
        Figure(
            f"time to park {n:,}",
            "s",
            engine.park_s,
            floor.park_s,
            None,
            "lower",
            note=f"starts {CONCURRENCY} at a time; per lifecycle: "
            + ", ".join(f"{v} {k}" for k, v in counts(script).items()),
        ),
        Figure(f"worker RSS at {n:,} parked", "MB", engine.rss / MB, floor.rss / MB, None, "lower"),
        Figure(
            "server database per parked lifecycle",
            "KB",
            engine.db / n / KB,
            floor.db / n / KB,
            None,
            "lower",
            note="dev server SQLite file + WAL + SHM growth ÷ N",
        ),
    ]
    if engine.wake_s and floor.wake_s:
        figures.append(
            Figure(
                f"mass wake-up of {n:,} at one instant",
                "lifecycles/s",
                n / engine.wake_s,
                n / floor.wake_s,
                None,
                "higher",
                floor_label="bare workflow, a woken lifecycle's shape, its timer at one instant",
                note="the same N that were parked, on the worker that parked them; from the "
                "instant until the last one's listing is recorded; per woken lifecycle: "
                + ", ".join(f"{v} {k}" for k, v in counts(wake_script).items()),
            )
        )
    return Result(
        benchmark="parked",
        size=size,
        figures=figures,
        absolutes=[
            Absolute(f"worker RSS at {n:,} parked", "MB", engine.rss / MB, 300),
            Absolute("server database per parked lifecycle", "KB", engine.db / n / KB, 30),
        ],
        details={
            "parked": n,
            "script": script,
            "shape": counts(script),
            "wake_script": wake_script,
            "db_bytes": {"engine": engine.db, "floor": floor.db},
            "park_seconds": {"engine": engine.park_s, "floor": floor.park_s},
            "wake_seconds": {"engine": engine.wake_s, "floor": floor.wake_s},
            # Worker CPU (user + sys) per lifecycle: steadier than times on a shared machine.
            "worker_cpu_ms_per_parked": {
                "engine": engine.park_cpu_s * 1000 / n,
                "floor": floor.park_cpu_s * 1000 / n,
            },
            "worker_cpu_ms_per_woken": {
                "engine": engine.wake_cpu_s * 1000 / n,
                "floor": floor.wake_cpu_s * 1000 / n,
            },
            "pilot_rate_per_s": {"engine": engine.pilot_rate, "floor": floor.pilot_rate},
            "instant_after_s": {"engine": engine.due_in_s, "floor": floor.due_in_s},
            "mass_wake_up": "measured"
            if engine.wake_s and floor.wake_s
            else "not measured: parking overran the instant the listings fell due",
        },
        seconds=time.perf_counter() - started,
    )
