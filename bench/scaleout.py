"""8. Scale-out: lifecycle throughput with 1, 2 and 4 engine workers (each its own process, all
polling one task queue) against one Temporal server. Does throughput grow with the workers
until the server is the limit? Each figure is a ratio to the 1-worker run of the same stack,
with the server's CPU (from /proc) beside it.

The parties are played as in the throughput benchmark: event-driven, reacting to the appends'
NOTIFYs (bench/driver.py `drive_lifecycles`), never polling a query. Beside each run: CPU
cores busy on average in the server, the workers, PostgreSQL and the whole machine (on one
machine the workers and the server share its cores, so the machine is the first limit).
`BENCH_SCALEOUT_N` and `BENCH_SCALEOUT_WORKERS` (e.g. "1,2,4") override the size.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench import driver
from bench.events import Listener, listening
from bench.harness import Absolute, Figure, Result, Size
from bench.procs import cpu_seconds, dev_server_pid, machine_busy_seconds, postgres_cpu_seconds
from bench.stack import Stack, WorkerProcess, open_stack

# (lifecycles per run, worker counts, warm-up lifecycles per run)
SIZES: dict[Size, tuple[int, tuple[int, ...], int]] = {
    "tiny": (4, (1, 2), 0),
    "full": (200, (1, 2, 4), 5),
}


async def _drive(stack: Stack, task_queue: str, n: int, tag: str, listener: Listener) -> None:
    """n common-path lifecycles at once, as the throughput benchmark drives them."""
    if n:
        listing = driver.sandbox_listing(stack.pool)
        await driver.drive_lifecycles(stack.client, task_queue, n, listener, listing, tag)


async def run_with(
    stack: Stack, workers: int, n: int, warmup: int, listener: Listener
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6].upper()
    task_queue = f"bench-scaleout-{workers}-{tag.lower()}"
    processes = [WorkerProcess(stack, "engine", task_queue) for _ in range(workers)]
    try:
        for p in processes:
            await p.ready()
        await _drive(stack, task_queue, warmup, f"W{tag}", listener)
        server, pgdata = dev_server_pid(stack.tmp), stack.tmp / "pgdata"

        def cpu() -> dict[str, float]:
            return {
                "server": cpu_seconds(server),
                "workers": sum(p.cpu_seconds() for p in processes),
                "postgres": postgres_cpu_seconds(pgdata),
                "machine": machine_busy_seconds(),
            }

        temporal_bytes, projection_bytes = stack.db_bytes(), await _projection_bytes(stack)
        before, t0 = cpu(), time.perf_counter()
        await _drive(stack, task_queue, n, f"S{tag}", listener)
        wall = time.perf_counter() - t0
        used = {k: v - before[k] for k, v in cpu().items()}
        # Storage per completed lifecycle, for sizing a year (read after the clock stops).
        temporal_bytes = stack.db_bytes() - temporal_bytes
        projection_bytes = await _projection_bytes(stack) - projection_bytes
    finally:
        for p in processes:
            await p.stop()
    return {
        "workers": workers,
        "n": n,
        "wall_s": wall,
        "per_s": n / wall,
        "temporal_db_kb_per_lifecycle": temporal_bytes / n / 1024,
        "projection_db_kb_per_lifecycle": projection_bytes / n / 1024,
        # Cores busy on average: CPU seconds ÷ wall seconds.
        **{f"{k}_cores": v / wall for k, v in used.items()},
        **{f"{k}_cpu_ms_per_lifecycle": v / n * 1000 for k, v in used.items() if k != "machine"},
    }


async def _projection_bytes(stack: Stack) -> int:
    size: int = await stack.pool.fetchval("SELECT pg_database_size(current_database())")
    return size


def _size(size: Size) -> tuple[int, tuple[int, ...], int]:
    n, counts, warmup = SIZES[size]
    n = int(os.environ.get("BENCH_SCALEOUT_N", 0)) or n
    if workers := os.environ.get("BENCH_SCALEOUT_WORKERS"):
        counts = tuple(int(w) for w in workers.split(","))
    return n, counts, warmup


async def run(size: Size) -> list[dict[str, Any]]:
    n, counts, warmup = _size(size)
    async with open_stack(http=True) as stack, listening(stack.dsn) as listener:
        return [await run_with(stack, k, n, warmup, listener) for k in counts]


async def measure(size: Size) -> Result:
    started = time.perf_counter()
    runs = await run(size)
    one = runs[0]
    n = runs[0]["n"]
    figures = [
        Figure(
            f"lifecycles/s, {r['workers']} workers",
            "1/s",
            r["per_s"],
            one["per_s"],
            None,
            "higher",
            floor_label="the same stack with 1 worker",
            note=f"{n} concurrent; cores busy: server {r['server_cores']:.2f} "
            f"(1 worker: {one['server_cores']:.2f}), workers {r['workers_cores']:.2f}, "
            f"PostgreSQL {r['postgres_cores']:.2f}, machine {r['machine_cores']:.2f}",
        )
        for r in runs[1:]
    ]
    absolutes = [
        Absolute(
            f"server CPU, {r['workers']} worker{'s' if r['workers'] > 1 else ''}",
            "cores",
            r["server_cores"],
            None,
            note=f"{r['per_s']:.2f} lifecycles/s; "
            f"{r['server_cpu_ms_per_lifecycle']:.1f} ms server CPU per lifecycle",
        )
        for r in runs
    ]
    return Result(
        benchmark="scaleout",
        size=size,
        figures=figures,
        absolutes=absolutes,
        details={
            "lifecycles_per_run": n,
            "driver": "bench.driver.drive_lifecycles (event-driven: the appends' NOTIFYs)",
            "runs": [{k: round(v, 4) for k, v in r.items()} for r in runs],
            "note": "one server, one PostgreSQL, every worker a process on one task queue; "
            "on one machine the workers and the server share its cores",
        },
        seconds=time.perf_counter() - started,
    )
