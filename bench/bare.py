"""The floor: a bare workflow with no logic and bare payloads that replays a lifecycle's shape.

Its script is the lifecycle's own history reduced to tokens (bench/shape.py): `A` runs a no-op
activity (`r`/`x`: on the `-registry`/`-exchange` queue, as the lifecycle's external calls;
`a`: on its own queue, never an append), `V` upserts search attributes when asked to,
`L` the same as a local activity. With `notify`, an `A` or `L` is an append (in a script read
with its queues, the lifecycle's own-queue activities are its projection appends): it sends the
append's NOTIFY (bench/events.py), labelled with the wait that comes next, `U1`/`S1`..., when no
other append lies between, else `appended`. `T` starts a timer that the next wait cancels (as
the lifecycle's timed waits are), `U`/`S` wait for the next update/signal from the driver, `W`
parks on a timer that fires at `wake_at` (the mandatory-listing clock), `Z` parks forever. The
driver plays it the same way it plays the lifecycle, so both do the same activities, signals,
timers and updates.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial
from typing import Any

from temporalio import activity, workflow
from temporalio.common import SearchAttributeUpdate

# Passed through, as the lifecycle's own rules and models are (a from-list import of a
# submodule would be re-executed in every new instance's sandbox: the floor would pay a
# pydantic model's construction per workflow that the engine does not).
with workflow.unsafe.imports_passed_through():
    import workflows.search_attributes as sa
    from bench.floor_input import PARKED_STAGE, WOKEN_STAGE, BareInput, append_labels


# What a lifecycle's stage change upserts (workflows.rules.search_attributes), with fixed values.
UPSERTED: list[SearchAttributeUpdate[Any]] = [
    sa.STAGE.value_set("bench"),
    sa.INSTITUTION.value_set("SYN-BENCH"),
    sa.TECHNOLOGY_FIELD.value_set("bench"),
    sa.TRANSFORMATION_MODES.value_set(["transfer"]),
    sa.FUNDING_SOURCES.value_set(["national_finance"]),
]


@activity.defn(name="bench.noop")
async def noop(value: str) -> str:
    return value


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self.updates = 0
        self.signals = 0
        self.waiting = ""
        self.seen: list[str] = []

    @workflow.run
    async def run(self, input: BareInput) -> int:
        timers: list[asyncio.Task[None]] = []
        need_u = need_s = 0
        labels = append_labels(input.script)
        for i, token in enumerate(input.script):
            if token == "A" and input.notify:
                await workflow.execute_activity(
                    "bench.append",
                    args=[workflow.info().workflow_id, labels[i]],
                    start_to_close_timeout=timedelta(seconds=30),
                )
            elif token in "Aa":  # an append without notify, or another own-queue activity
                await workflow.execute_activity(
                    noop, "x", start_to_close_timeout=timedelta(seconds=30)
                )
            elif token in "rx":
                # On the worker's `-registry` / `-exchange` queue, as the lifecycle's calls.
                suffix = "registry" if token == "r" else "exchange"
                await workflow.execute_activity(
                    noop,
                    "x",
                    start_to_close_timeout=timedelta(seconds=30),
                    task_queue=f"{workflow.info().task_queue}-{suffix}",
                )
            elif token == "L" and not input.notify:
                await workflow.execute_local_activity(
                    noop, "x", start_to_close_timeout=timedelta(seconds=30)
                )
            elif token == "L":
                await workflow.execute_local_activity(
                    "bench.append",
                    args=[workflow.info().workflow_id, labels[i]],
                    start_to_close_timeout=timedelta(seconds=30),
                )
            elif token == "V" and input.upserts:
                workflow.upsert_search_attributes(UPSERTED)
            elif token == "T":
                timers.append(asyncio.create_task(asyncio.sleep(input.timer_seconds)))
            elif token in "US":
                if token == "U":
                    need_u += 1
                    self.waiting = f"U{need_u}"
                    await workflow.wait_condition(partial(self._updates_reached, need_u))
                else:
                    need_s += 1
                    self.waiting = f"S{need_s}"
                    await workflow.wait_condition(partial(self._signals_reached, need_s))
                for timer in timers:
                    timer.cancel()
                timers.clear()
            elif token == "W":
                assert input.wake_at is not None
                self.waiting = "parked"
                self._mark(input, PARKED_STAGE)
                await workflow.sleep(max(timedelta(0), input.wake_at - workflow.now()))
            elif token == "Z":
                self.waiting = "parked"
                self._mark(input, WOKEN_STAGE if input.wake_at else PARKED_STAGE)
                await workflow.wait_condition(lambda: False)
        self.waiting = "done"
        return self.updates + self.signals

    def _mark(self, input: BareInput, stage: str) -> None:
        if input.mark_parked:
            workflow.upsert_search_attributes([sa.STAGE.value_set(stage)])

    def _updates_reached(self, n: int) -> bool:
        return self.updates >= n

    def _signals_reached(self, n: int) -> bool:
        return self.signals >= n

    @workflow.update
    def bare_update(self, value: str) -> int:
        self.updates += 1
        return self.updates

    @workflow.signal
    def bare_signal(self, value: str) -> None:
        self.signals += 1
        self.seen.append(value)
        del self.seen[:-50]

    @workflow.query
    def progress(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "seen": self.seen}
