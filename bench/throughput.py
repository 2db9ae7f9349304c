"""1. Lifecycle throughput and 2. worker CPU per lifecycle, from the same runs.

N achievements driven concurrently through the common path (disclosure → evaluation →
transaction → payment → reporting; sandboxes at zero latency) on three workers in turn, each
in its own subprocess: the engine with its real activities (HTTP + PostgreSQL), the engine with
canned in-process activities, and the bare floor replaying the lifecycle's own shape.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench import driver
from bench.harness import Figure, Result, Size
from bench.shape import counts, script_of
from bench.stack import Stack, WorkerProcess, open_stack

SIZES = {"tiny": 3, "full": 200}
WARMUP = {"tiny": 0, "full": 5}
_cache: dict[Size, dict[str, Any]] = {}


async def _run_engine(
    stack: Stack, worker: WorkerProcess, n: int, warmup: int, tag: str
) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    script = ""
    for i in range(warmup):
        handle, _ = await driver.drive_lifecycle(
            stack.client, worker.task_queue, driver.common_path(i, f"W{tag}", today)
        )
        script = script or await script_of(handle)  # type: ignore[arg-type]
    cpu0, t0 = worker.cpu_seconds(), time.perf_counter()
    await driver.bounded(
        n,
        n,
        lambda i: driver.drive_lifecycle(
            stack.client, worker.task_queue, driver.common_path(i, tag, today)
        ),
    )
    wall = time.perf_counter() - t0
    cpu = worker.cpu_seconds() - cpu0
    return {
        "script": script,
        "wall_s": wall,
        "per_s": n / wall,
        "cpu_per_lifecycle_s": cpu / max(n, 1),
    }


async def _run_bare(
    stack: Stack, worker: WorkerProcess, n: int, warmup: int, script: str, tag: str
) -> dict[str, Any]:
    q = worker.task_queue
    bare_script = ""
    for i in range(warmup):
        h = await driver.drive_bare(stack.client, q, f"bare-w-{tag}-{i}", script)
        bare_script = bare_script or await script_of(h)  # type: ignore[arg-type]
    cpu0, t0 = worker.cpu_seconds(), time.perf_counter()
    await driver.bounded(
        n, n, lambda i: driver.drive_bare(stack.client, q, f"bare-{tag}-{i}", script)
    )
    wall = time.perf_counter() - t0
    cpu = worker.cpu_seconds() - cpu0
    if not bare_script:
        bare_script = await script_of(stack.client.get_workflow_handle(f"bare-{tag}-0"))
    return {
        "script": bare_script,
        "wall_s": wall,
        "per_s": n / wall,
        "cpu_per_lifecycle_s": cpu / n,
    }


async def run(size: Size) -> dict[str, Any]:
    """Engine (HTTP), bare floor, engine (canned); cached so `all` measures once for 1 and 2."""
    if size in _cache:
        return _cache[size]
    n, warmup = SIZES[size], WARMUP[size]
    tag = uuid.uuid4().hex[:6].upper()
    started = time.perf_counter()
    async with open_stack(http=True) as stack:
        async with stack.worker("engine") as w:
            # The shape first (and a warm server), from a real lifecycle's history.
            probe = await _run_engine(stack, w, 0, 1, f"P{tag}")
        script = probe["script"]
        async with stack.worker("bare") as w:
            bare = await _run_bare(stack, w, n, warmup, script, tag)
        async with stack.worker("engine") as w:
            engine = await _run_engine(stack, w, n, warmup, f"E{tag}")
        async with stack.worker("canned") as w:
            canned = await _run_engine(stack, w, n, warmup, f"C{tag}")
    out = {
        "n": n,
        "shape": counts(script),
        "script": script,
        "bare_shape": counts(bare["script"]),
        "engine": engine,
        "canned": canned,
        "bare": bare,
        "seconds": time.perf_counter() - started,
    }
    _cache[size] = out
    return out


def _details(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "lifecycles": r["n"],
        "shape_per_lifecycle": r["shape"],
        "floor_shape_per_workflow": r["bare_shape"],
        "script": r["script"],
        "exchange_played_by": "client signals (deal, payment); reviews as updates",
        "runs": {
            k: {kk: round(vv, 4) for kk, vv in r[k].items() if kk != "script"}
            for k in ("engine", "canned", "bare")
        },
    }


async def measure(size: Size) -> Result:
    r = await run(size)
    floor = r["bare"]["per_s"]
    shape = ", ".join(f"{v} {k}" for k, v in r["shape"].items())
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
    r = await run(size)
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
