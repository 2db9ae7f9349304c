"""1. Lifecycle throughput and 2. worker CPU per lifecycle, from the same runs.

N achievements driven concurrently through the common path (disclosure → evaluation →
transaction → payment → reporting; sandboxes at zero latency), each side on a fresh stack and
its worker in its own subprocess: the engine with its real activities (HTTP + PostgreSQL), the
bare floor, the floor with the lifecycle's search-attribute upserts too, and the engine with
canned in-process activities. The floor replays, one for one, the shapes
the engine's N lifecycles had in the same run, read from their histories: how many appends a
lifecycle makes depends on timing (a review that arrives while the previous append runs shares
the next one), so one lifecycle's shape is not the batch's. The parties react to the appends'
NOTIFYs (bench/events.py), never to a query; the dev server's request counters, read around
each run, show how many queries it still answered.

`ACHIEVEMENTS_BENCH_THROUGHPUT_N` overrides N (e.g. 40 for a profile on a shared machine).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench import driver
from bench.events import Listener, listening
from bench.harness import Figure, Result, Size
from bench.procs import cpu_seconds, dev_server_pid, machine_busy_seconds, postgres_cpu_seconds
from bench.shape import counts, script_of
from bench.stack import Stack, WorkerProcess, open_stack

SIZES = {"tiny": 3, "full": 200}
WARMUP = {"tiny": 0, "full": 5}
_cache: dict[Size, dict[str, Any]] = {}


def _size(size: Size) -> tuple[int, int]:
    """N and the warm-up lifecycles per worker; an N from the environment gets full's warm-up."""
    n = os.environ.get("ACHIEVEMENTS_BENCH_THROUGHPUT_N")
    return (int(n), WARMUP["full"]) if n else (SIZES[size], WARMUP[size])


class _Meter:
    """Worker CPU, wall time and the server's requests over one measured batch."""

    def __init__(self, stack: Stack, worker: WorkerProcess, listener: Listener) -> None:
        self.stack, self.worker, self.listener = stack, worker, listener

    def _others(self) -> dict[str, float]:
        """CPU seconds of every other process the run loads (the sandboxes and the driver
        share this one), and of the whole machine."""
        return {
            "server": cpu_seconds(self.server),
            "postgres": postgres_cpu_seconds(self.stack.tmp / "pgdata"),
            "driver_and_sandboxes": cpu_seconds(os.getpid()),
            "machine": machine_busy_seconds(),
        }

    async def __aenter__(self) -> _Meter:
        self.server = dev_server_pid(self.stack.tmp)
        self.requests0 = await self.stack.server_requests()
        self.heard0 = self.listener.received
        self.others0 = self._others()
        self.cpu0, self.t0 = self.worker.cpu_seconds(), time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = self.worker.cpu_seconds() - self.cpu0
        self.others = {k: v - self.others0[k] for k, v in self._others().items()}
        self.heard = self.listener.received - self.heard0
        after = await self.stack.server_requests()
        self.requests = {k: v - self.requests0.get(k, 0.0) for k, v in after.items()}

    def figures(self, n: int) -> dict[str, Any]:
        queries = self.requests.get("QueryWorkflow", 0.0)
        return {
            "wall_s": self.wall,
            "per_s": n / self.wall,
            "cpu_per_lifecycle_s": self.cpu / max(n, 1),
            # Where the rest of the machine went, per lifecycle: what limits the rate.
            **{f"{k}_cpu_per_lifecycle_s": v / max(n, 1) for k, v in self.others.items()},
            "notifications_per_lifecycle": self.heard / max(n, 1),
            "server_queries_per_s": queries / self.wall,
            "server_requests_per_s": sum(self.requests.values()) / self.wall,
            "server_requests_per_lifecycle": sum(self.requests.values()) / max(n, 1),
        }


async def _run_engine(
    stack: Stack, worker: WorkerProcess, n: int, warmup: int, tag: str
) -> dict[str, Any]:
    """Drive N lifecycles; return the figures and each measured lifecycle's shape."""
    today = datetime.now(UTC).date()
    listing_of = (
        driver.canned_listing if worker.mode == "canned" else driver.sandbox_listing(stack.pool)
    )
    script = ""
    async with listening(stack.dsn) as listener:
        for i in range(warmup):
            handle, _ = await driver.drive_lifecycle(
                stack.client,
                worker.task_queue,
                driver.common_path(i, f"W{tag}", today),
                listener,
                listing_of,
            )
            script = script or await script_of(handle, queues=True)  # type: ignore[arg-type]
        async with _Meter(stack, worker, listener) as meter:
            timings = await driver.drive_lifecycles(
                stack.client, worker.task_queue, n, listener, listing_of, tag
            )
    # Read after the measured window, so that the reading is not measured.
    scripts = await driver.bounded(
        len(timings),
        16,
        lambda i: script_of(stack.client.get_workflow_handle(timings[i].workflow_id), queues=True),
    )
    return {"script": script, "scripts": scripts, **meter.figures(n)}


async def _run_bare(
    stack: Stack,
    worker: WorkerProcess,
    n: int,
    warmup: int,
    scripts: list[str],
    tag: str,
    upserts: bool = False,
) -> dict[str, Any]:
    """Drive N floor workflows, the i-th with the i-th script (`upserts`: with the lifecycle's
    search-attribute upserts too)."""
    q = worker.task_queue
    bare_script = ""
    async with listening(stack.dsn) as listener:
        for i in range(warmup):
            h = await driver.drive_bare(
                stack.client, q, f"bare-w-{tag}-{i}", scripts[0], listener, upserts=upserts
            )
            bare_script = bare_script or await script_of(h, queues=True)  # type: ignore[arg-type]
        async with _Meter(stack, worker, listener) as meter:
            await driver.bounded(
                n,
                n,
                lambda i: driver.drive_bare(
                    stack.client,
                    q,
                    f"bare-{tag}-{i}",
                    scripts[i % len(scripts)],
                    listener,
                    upserts=upserts,
                ),
            )
    if not bare_script:
        bare_script = await script_of(
            stack.client.get_workflow_handle(f"bare-{tag}-0"), queues=True
        )
    return {"script": bare_script, **meter.figures(n)}


def mean_shape(scripts: list[str]) -> dict[str, float]:
    """The mean of each count over the scripts, with the appends (`A`) on their own."""
    if not scripts:
        return {}
    total: Counter[str] = Counter()
    for one in scripts:
        total.update(counts(one))
        total["appends"] += one.count("A") + one.count("L")
    return {k: round(v / len(scripts), 3) for k, v in total.items()}


async def run(size: Size) -> dict[str, Any]:
    """Engine (HTTP), bare floor (the engine's shapes), the floor with the upserts, engine
    (canned), each on a fresh stack; cached so `all` measures once for 1 and 2."""
    if size in _cache:
        return _cache[size]
    n, warmup = _size(size)
    tag = uuid.uuid4().hex[:6].upper()
    started = time.perf_counter()
    # Each side on a fresh stack: a dev server's CPU per lifecycle grows with the workflows
    # it already holds (same shape, 279 ms first and 352 ms fourth on one server), so on a
    # shared server the order of the sides would decide part of the ratio.
    async with open_stack(http=True) as stack:
        async with stack.worker("engine") as w:
            # The shape (and a warm server), from a real lifecycle's history.
            probe = await _run_engine(stack, w, 0, 1, f"P{tag}")
        script = probe["script"]
        async with stack.worker("engine") as w:
            engine = await _run_engine(stack, w, n, warmup, f"E{tag}")
    engine_scripts = engine.pop("scripts") or [script]
    async with open_stack(http=True) as stack, stack.worker("bare") as w:
        bare = await _run_bare(stack, w, n, warmup, engine_scripts, tag)
    # The same floor making the lifecycle's search-attribute upserts as well: how much of the
    # gap is the server indexing what operators filter by.
    async with open_stack(http=True) as stack, stack.worker("bare") as w:
        bare_upserts = await _run_bare(stack, w, n, warmup, engine_scripts, f"V{tag}", upserts=True)
    async with open_stack(http=True) as stack, stack.worker("canned") as w:
        canned = await _run_engine(stack, w, n, warmup, f"C{tag}")
    canned_scripts = canned.pop("scripts")
    out = {
        "n": n,
        "shape": counts(script),
        "mean_shape": {
            "engine": mean_shape(engine_scripts),
            "canned": mean_shape(canned_scripts),
        },
        "script": script,
        "bare_shape": counts(bare["script"]),
        "engine": engine,
        "canned": canned,
        "bare": bare,
        "bare_upserts": bare_upserts,
        "seconds": time.perf_counter() - started,
    }
    _cache[size] = out
    return out


def _details(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "lifecycles": r["n"],
        "shape_per_lifecycle": r["shape"],
        "floor_shape_per_workflow": r["bare_shape"],
        # The floor replays the engine's (HTTP) shapes one for one: its mean is the engine's.
        "mean_shape_per_lifecycle": r["mean_shape"],
        "script": r["script"],
        "exchange_played_by": "client signals (deal, payment); reviews as updates",
        "parties_react_to": "the appends' NOTIFY on channel lifecycle_events (one LISTEN)",
        "runs": {
            k: {kk: round(vv, 4) for kk, vv in r[k].items() if kk != "script"}
            for k in ("engine", "canned", "bare", "bare_upserts")
        },
    }


# `throughput` and `cpu` read the same runs: `bench all` drives them once.
_RUNS: dict[str, dict[str, Any]] = {}


async def _one_run(size: Size) -> dict[str, Any]:
    if size not in _RUNS:
        _RUNS[size] = await run(size)
    return _RUNS[size]


async def measure(size: Size) -> Result:
    r = await _one_run(size)
    floor = r["bare"]["per_s"]
    shape = ", ".join(f"{v} {k}" for k, v in r["shape"].items())
    # Zero when no party polls: a count of 0 cannot be a ratio, so it is a note and details.
    queries = ", ".join(
        f"{k} {r[k]['server_queries_per_s']:.2f}/s of {r[k]['server_requests_per_s']:.0f}/s"
        for k in ("engine", "canned", "bare")
    )
    return Result(
        benchmark="throughput",
        size=size,
        figures=[
            Figure(
                "lifecycles/s, HTTP activities",
                "1/s",
                r["engine"]["per_s"],
                floor,
                0.85,
                "higher",
                note=f"{r['n']} concurrent; per lifecycle: {shape}",
            ),
            Figure(
                "dev-server requests per lifecycle, HTTP activities",
                "1",
                r["engine"]["server_requests_per_lifecycle"],
                r["bare"]["server_requests_per_lifecycle"],
                None,
                "lower",
                note=f"dev server QueryWorkflow/s of all requests/s: {queries}",
            ),
            Figure(
                "dev-server CPU per lifecycle, HTTP activities",
                "ms",
                r["engine"]["server_cpu_per_lifecycle_s"] * 1000,
                r["bare"]["server_cpu_per_lifecycle_s"] * 1000,
                None,
                "lower",
                note="the machine's two cores are shared: each side's rate follows the CPU "
                "every process spends per lifecycle (details: runs.*_cpu_per_lifecycle_s)",
            ),
            Figure(
                "lifecycles/s, HTTP activities, against the floor with the upserts",
                "1/s",
                r["engine"]["per_s"],
                r["bare_upserts"]["per_s"],
                None,
                "higher",
                floor_label="bare workflow, same shape, and the lifecycle's search-attribute "
                "upserts",
                note="the floor of the line above also upserting the lifecycle's search "
                f"attributes ({r['mean_shape']['engine'].get('search-attribute upserts', 0)} "
                "a lifecycle): dev-server CPU per lifecycle "
                f"{r['bare_upserts']['server_cpu_per_lifecycle_s'] * 1000:.0f} ms",
            ),
            Figure(
                "lifecycles/s, in-process activities",
                "1/s",
                r["canned"]["per_s"],
                floor,
                0.85,
                "higher",
            ),
        ],
        details=_details(r),
        seconds=r["seconds"],
    )


async def measure_cpu(size: Size) -> Result:
    r = await _one_run(size)
    floor = r["bare"]["cpu_per_lifecycle_s"] * 1000
    return Result(
        benchmark="cpu",
        size=size,
        figures=[
            Figure(
                "worker CPU per lifecycle, HTTP activities",
                "ms",
                r["engine"]["cpu_per_lifecycle_s"] * 1000,
                floor,
                1.25,
                "lower",
                note="user+sys of the worker subprocess ÷ lifecycles",
            ),
            Figure(
                "worker CPU per lifecycle, in-process activities",
                "ms",
                r["canned"]["cpu_per_lifecycle_s"] * 1000,
                floor,
                1.25,
                "lower",
            ),
        ],
        details=_details(r),
        seconds=r["seconds"],
    )
