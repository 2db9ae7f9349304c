"""Run benchmarks by name, print the table and write the JSON (bench/results/)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from bench.harness import RESULTS, Result, Runner, Size, show, write
from core.binaries import BinaryNotFound

NAMES = ("throughput", "cpu", "latency", "report", "timeskip", "gateway", "scaleout", "parked")


def _runner(name: str) -> Runner:
    if name == "throughput":
        from bench.throughput import measure

        return measure
    if name == "cpu":
        from bench.throughput import measure_cpu

        return measure_cpu
    if name == "latency":
        from bench.latency import measure as latency

        return latency
    if name == "parked":
        from bench.parked import measure as parked

        return parked
    if name == "report":
        from bench.report import measure as report

        return report
    if name == "timeskip":
        from bench.timeskip import measure as timeskip

        return timeskip
    if name == "gateway":
        from bench.gateway import measure as gateway

        return gateway
    if name == "scaleout":
        from bench.scaleout import measure as scaleout

        return scaleout
    raise ValueError(f"unknown benchmark {name!r}: one of {', '.join(NAMES)} or all")


RUN_LIMIT_SECONDS = {"tiny": 300, "full": 4 * 3600}


async def run(names: list[str], size: Size, partial: Path | None = None) -> list[Result]:
    """Run each benchmark in turn; with `partial`, keep the results so far there after each
    (a long run that is stopped keeps what it measured)."""
    results: list[Result] = []
    for name in names:
        started = time.perf_counter()
        # Every run stops by itself: a stuck lifecycle (e.g. an activity no worker serves)
        # ends the benchmark with an error instead of hanging.
        async with asyncio.timeout(RUN_LIMIT_SECONDS[size]):
            result = await _runner(name)(size)
        result.seconds = result.seconds or time.perf_counter() - started
        results.append(result)
        if partial is not None:
            write(results, size, partial.parent, partial.name)
    return results


def quiet() -> None:
    """The sandboxes and the gateway run in this process: keep their request logs out."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("temporalio").setLevel(logging.ERROR)


def main(what: str, size: Size, out_dir: Path = RESULTS) -> Path:
    quiet()
    names = list(NAMES) if what == "all" else [n.strip() for n in what.split(",")]
    for name in names:
        _runner(name)  # unknown names fail before anything starts
    partial = out_dir / f"bench-partial-{size}-{os.getpid()}.json"
    try:
        results = asyncio.run(run(names, size, partial))
    except BinaryNotFound as err:
        raise SystemExit(str(err)) from None  # an installation problem: its message, no trace
    show(results)
    path = write(results, size, out_dir)
    partial.unlink(missing_ok=True)
    print(f"results: {path}")
    return path
