"""6. Time-skipping: wall time of the five-year lifecycle test, and a floor: a bare workflow
with the same activities, signals, timers and updates, driven with the same time skips on the
same kind of server (the time-skipping test server, in-process worker)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare import BareWorkflow, noop
from bench.common import CONVERTER
from bench.driver import poll, progress
from bench.floor_input import BareInput
from bench.harness import Absolute, Figure, Result, Size
from bench.shape import LOCAL_ACTIVITY_MARKER, counts
from core.binaries import binary

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/test_lifecycle_time_skipping.py::test_five_year_lifecycle_deal_on_second_exchange"
HISTORY = ROOT / "tests" / "histories" / "five_year_full_path.json"
TOKENS = {
    "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED": "A",
    "EVENT_TYPE_TIMER_STARTED": "T",
    "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED": "S",
    "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED": "U",
}
# The test's env.sleep calls, after the signal with this 1-based number.
SKIPS = {1: timedelta(days=16), 4: timedelta(days=90), 6: timedelta(days=90)}
YEARLY_BEFORE = (9, 10, 11)  # a year passes before each incubation milestone signal
# Each side is measured this many times, alternating, and the medians compared: one run of a
# sub-second test moves by a third on a shared machine.
RUNS = {"tiny": 1, "full": 5}
RUNS_ENV = "ACHIEVEMENTS_BENCH_TIMESKIP_RUNS"


def _test_call_seconds() -> float:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", TEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    match = re.search(r"([\d.]+)s call\s+\S*test_five_year", out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"the five-year test failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return float(match.group(1))


def _token(event: dict[str, Any]) -> str | None:
    if event["eventType"] == "EVENT_TYPE_MARKER_RECORDED":
        name = event["markerRecordedEventAttributes"]["markerName"]
        return "L" if name == LOCAL_ACTIVITY_MARKER else None
    return TOKENS.get(event["eventType"])


def _script() -> str:
    events = json.loads(HISTORY.read_text(encoding="utf-8"))["history"]["events"]
    return "".join(t for e in events if (t := _token(e)) is not None)


async def _floor(script: str) -> float:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=CONVERTER, test_server_existing_path=binary("temporal-test-server")
    )
    try:
        queue = f"bench-ts-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client, task_queue=queue, workflows=[BareWorkflow], activities=[noop]
        ):
            t0 = time.perf_counter()
            handle = await env.client.start_workflow(
                BareWorkflow.run, BareInput(script=script), id=f"bare-{queue}", task_queue=queue
            )
            await poll(lambda: progress(handle), lambda p: p["waiting"] == "U1", 60)
            for i in range(script.count("U")):
                await handle.execute_update(BareWorkflow.bare_update, f"u{i}")
            for n in range(1, script.count("S") + 1):
                if n in YEARLY_BEFORE:
                    await env.sleep(timedelta(days=365))
                await handle.signal(BareWorkflow.bare_signal, f"s{n}")
                if n in SKIPS:
                    await env.sleep(SKIPS[n])
            await handle.result()
            return time.perf_counter() - t0
    finally:
        await env.shutdown()


async def measure(size: Size) -> Result:
    started = time.perf_counter()
    script = _script()
    runs = int(os.environ.get(RUNS_ENV, RUNS[size]))
    engines: list[float] = []
    floors: list[float] = []
    for _ in range(runs):
        engines.append(await asyncio.to_thread(_test_call_seconds))
        floors.append(await _floor(script))
    engine, floor = statistics.median(engines), statistics.median(floors)
    return Result(
        benchmark="timeskip",
        size=size,
        figures=[
            Figure(
                "five-year lifecycle test (pytest call phase)",
                "s",
                engine,
                floor,
                None,
                "lower",
                floor_label="bare workflow, same shape and skips, in-process worker",
                note=f"engine: pytest --durations call time; median of {runs} alternating runs",
            ),
        ],
        absolutes=[Absolute("five-year lifecycle test", "s", engine, 0.5)],
        details={
            "test": TEST,
            "shape": counts(script),
            "script": script,
            "engine_runs": engines,
            "floor_runs": floors,
        },
        seconds=time.perf_counter() - started,
    )
