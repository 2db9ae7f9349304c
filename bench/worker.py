"""The worker under measurement, in its own process so its CPU time and RSS can be read.

    python -m bench.worker --mode engine|canned|bare --target HOST:PORT --task-queue Q --dsn DSN
        [--registry-url URL --exchange-url URL]

`engine`: workers.worker.build_worker with the real activities (HTTP to the sandboxes,
PostgreSQL projections). `canned`: the same workflows and queues, activities from
bench/canned.py. `bare`: the floor workflow, its no-op activity and its NOTIFY-sending append.
Every mode holds a small pool to the projection database: the appends' NOTIFYs go through it.
Prints "ready" once polling (its logs go to stderr), and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from activities.store import create_pool
from bench.common import CONVERTER
from bench.events import Notifier
from core.settings import Settings
from workers.worker import worker_options


async def _run(args: argparse.Namespace) -> None:
    client = await Client.connect(args.target, data_converter=CONVERTER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deps = None
    pool = await create_pool(args.dsn, max_size=4)
    notifier = Notifier(pool)
    # The floor and the canned engine get the engine's own worker options (cache size, build).
    common = worker_options(Settings(drain_timeout_seconds=2))
    if args.mode == "bare":
        import compileall

        from bench import bare as bare_module
        from bench.bare import BareWorkflow, noop
        from workers.worker import WorkerGroup

        # As the engine's workflow modules are (workers.worker.cache_workflow_bytecode): without
        # it the sandbox compiled the floor's module anew for every new instance.
        compileall.compile_file(bare_module.__file__, quiet=2)

        def bare(queue: str, workflows: list[type], activities: list[object]) -> Worker:
            return Worker(
                client,
                task_queue=queue,
                workflows=workflows,
                activities=activities,  # type: ignore[arg-type]
                **common,
            )

        # The engine's three queues, so that `r`/`x` activities go where the lifecycle's do.
        group: object = WorkerGroup(
            bare(args.task_queue, [BareWorkflow], [noop, notifier.append]),
            bare(f"{args.task_queue}-registry", [], [noop]),
            bare(f"{args.task_queue}-exchange", [], [noop]),
        )
    elif args.mode == "canned":
        from bench import canned
        from workers.worker import WORKFLOWS, WorkerGroup, cache_workflow_bytecode

        cache_workflow_bytecode()

        def worker(queue: str, activities: list[object], workflows: bool = False) -> Worker:
            return Worker(
                client,
                task_queue=queue,
                workflows=list(WORKFLOWS) if workflows else [],
                activities=activities,  # type: ignore[arg-type]
                **common,
            )

        projection = canned.NotifyingProjection(notifier)
        main_activities: list[object] = [
            *canned.MAIN,
            projection.record_events,
            projection.record_event,
        ]
        group = WorkerGroup(
            worker(args.task_queue, main_activities, workflows=True),
            worker(f"{args.task_queue}-registry", list(canned.REGISTRY)),
            worker(f"{args.task_queue}-exchange", list(canned.EXCHANGE)),
        )
    else:
        from workers.worker import Dependencies, build_worker

        settings = Settings(
            registry_url=args.registry_url,
            exchange_url=args.exchange_url,
            metrics_port=0,
            task_queue=args.task_queue,
            drain_timeout_seconds=2,
        )
        deps = await Dependencies.open(settings, args.dsn)
        group = build_worker(client, deps, args.task_queue, settings)
    async with group:  # type: ignore[attr-defined]
        print("ready", flush=True)
        await stop.wait()
    if deps is not None:
        await deps.close()
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["engine", "canned", "bare"], required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--registry-url")
    parser.add_argument("--exchange-url")
    args = parser.parse_args()
    from core.logging import configure

    configure(json=True)  # as `achievements worker` logs in production: JSON lines on stderr
    asyncio.run(_run(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # sdk-python #300: skip the Rust core's teardown at interpreter exit


if __name__ == "__main__":
    main()
