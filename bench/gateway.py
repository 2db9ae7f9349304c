"""7. The gateway against bare starts: N disclosures at concurrency 50 through the gateway
(`POST /achievements` with a real bearer token from the local issuer, so the token check is in
the measured path) against N bare `client.start_workflow` calls of the same lifecycle input
(`workflows.start.start_lifecycle`: same workflow type, input, search attributes and summary)
on the same server at the same concurrency. Rate, p50 and p99 of both.

The gateway runs in its own process (`achievements gateway`), as in production; its CPU, the
server's and this driver's are read from /proc beside the figures. No worker polls the task
queue: the stack stays quiet and both sides measure the start path alone. The two sides
alternate in turns of 100, so drift (the server's database growing, other load on the
machine) falls on both alike.
`BENCH_GATEWAY_N` overrides N; `BENCH_GATEWAY_PROFILE=out.json` records the gateway with
py-spy (speedscope format) while it runs, when py-spy is installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.harness import Figure, Result, Size
from bench.procs import cpu_seconds, dev_server_pid
from bench.stack import Stack, open_stack, stop_process
from cli.demo import officer
from cli.samples import Scenario, scenario
from core.http_server import bind_socket, serving
from core.policy_book import PolicyBook
from core.settings import Settings
from sandboxes.identity_directory import demo_directory
from sandboxes.identity_provider import KeyRing, SyntheticSignIn, create_identity_provider_app
from schemas.identity import Actor, Role
from schemas.lifecycle import LifecycleInput
from workflows.start import start_lifecycle

SIZES = {"tiny": 20, "full": 500}
WARMUP = {"tiny": 5, "full": 25}
CONCURRENCY = 50
# Each side runs N in turns of about ROUND requests (two concurrency windows): on a shared
# machine, a burst of someone else's load then falls on both sides instead of one.
ROUND = 2 * CONCURRENCY
FLOOR_LABEL = "bare client.start_workflow of the same lifecycle input, same concurrency"


@dataclass
class Side:
    """One side's requests: latencies and the wall time of its phases, CPU per process."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class GatewayProcess:
    """`achievements gateway` in a subprocess, configured by environment as in production."""

    def __init__(self, stack: Stack, issuer: str, task_queue: str, log: Path) -> None:
        probe = bind_socket("127.0.0.1")
        self.port = probe.getsockname()[1]
        probe.close()  # the gateway binds it again at once (SO_REUSEADDR)
        self.url = f"http://127.0.0.1:{self.port}"
        # Nothing of the driver's own configuration leaks in (no .env: cwd is the stack's tmp).
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ACHIEVEMENTS_", "TEMPORAL_"))
        }
        env |= {
            "TEMPORAL_ADDRESS": stack.target,
            "ACHIEVEMENTS_OIDC_ISSUER": issuer,
            "ACHIEVEMENTS_TASK_QUEUE": task_queue,
            "ACHIEVEMENTS_DATABASE_URL": stack.dsn,
            # The embedded stack's mode: the sandbox webhook secrets are allowed.
            "ACHIEVEMENTS_ENVIRONMENT": "dev",
            "ACHIEVEMENTS_LOG_JSON": "1",
        }
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "gateway", "--port", str(self.port)],
            env=env,
            cwd=stack.tmp,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self, http: httpx.AsyncClient, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited; see {self.log.name}")
            try:
                if (await http.get(f"{self.url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway never became healthy; see {self.log.name}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        await stop_process(self.process, self.log)


@asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    """The requests' client: aiohttp, whose CPU per request is a fraction of httpx's, so the
    driver takes less of the cores the gateway and the server share with it."""
    # Idle connections are dropped before uvicorn's keep-alive (5 s) closes them: reusing one
    # the server is closing at that instant fails a POST, which is never retried.
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=2.0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@asynccontextmanager
async def issuer(settings: Settings) -> AsyncIterator[str]:
    """The local OIDC issuer (sandboxes/identity_provider.py) with the demo's people."""
    sock = bind_socket("127.0.0.1")
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_identity_provider_app(
        url, demo_directory(), KeyRing(), audience=settings.oidc_audience
    )
    async with serving(app, sock):
        yield url


def _py_spy(pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` into BENCH_GATEWAY_PROFILE (speedscope), if asked and installed."""
    out, spy = os.environ.get("BENCH_GATEWAY_PROFILE"), shutil.which("py-spy")
    if not out or not spy:
        return None
    args = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "speedscope"]
    return subprocess.Popen([*args, "--output", out], stdout=subprocess.DEVNULL)


@asynccontextmanager
async def profiling(pid: int) -> AsyncIterator[None]:
    """The gateway under py-spy while the block runs (see _py_spy)."""
    spy = _py_spy(pid)
    try:
        yield
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            await asyncio.to_thread(spy.wait)


async def timed(side: Side, n: int, call: Callable[[int], Awaitable[None]]) -> None:
    """n calls, CONCURRENCY at a time; each one's latency and the phase's wall time."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await call(i)
            side.latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    side.wall += time.perf_counter() - t0


def lifecycle_input(sc: Scenario, book: PolicyBook) -> LifecycleInput:
    """What the gateway builds from the disclosure request and the officer's token."""
    d = sc.disclosure
    who = officer(d.institution.code)
    return LifecycleInput(
        disclosure=d,
        policy=book.current(d.institution.code),
        disclosed_at=datetime.now(UTC),
        disclosed_by=who,
        discloser=Actor(
            subject=who,
            role=Role.TTO_OFFICER,
            institution=d.institution.code,
            name=f"Technology-transfer officer, {d.institution.name} (synthetic)",
        ),
        reviewers=sc.reviewers,
        exchanges=sc.exchanges,
        asking_price=sc.asking_price,
        pricing=sc.pricing,
        evaluation=sc.evaluation,
    )


def disclosure_body(sc: Scenario) -> bytes:
    return sc.disclosure_request().model_dump_json().encode()


class Cpu:
    """CPU seconds of the gateway, the server and this driver over the phases of one side."""

    def __init__(self, gateway: int, server: int) -> None:
        self.pids = {"gateway": gateway, "server": server}

    def read(self) -> dict[str, float]:
        return {**{k: cpu_seconds(p) for k, p in self.pids.items()}, "driver": time.process_time()}

    @asynccontextmanager
    async def into(self, side: Side) -> AsyncIterator[None]:
        before = self.read()
        yield
        for k, v in self.read().items():
            side.cpu[k] = side.cpu.get(k, 0.0) + v - before[k]


async def run(size: Size, n: int | None = None) -> tuple[Side, Side, dict[str, Any]]:
    n = n or int(os.environ.get("BENCH_GATEWAY_N", 0)) or SIZES[size]
    warmup, tag = WARMUP[size], uuid.uuid4().hex[:6].upper()
    today = datetime.now(UTC).date()
    book = PolicyBook.load()
    task_queue = f"bench-gateway-{tag.lower()}"  # no worker: only the starts are measured
    engine, floor = Side(), Side()
    async with open_stack(http=False) as stack, issuer(stack.settings) as idp:
        async with httpx.AsyncClient(timeout=60.0) as http, _session() as session:
            gateway = GatewayProcess(stack, idp, task_queue, stack.tmp / "gateway.log")
            try:
                await gateway.ready(http)
                people = SyntheticSignIn(http, idp)
                # A client holds its token; signing in is not the gateway's cost.
                codes = {scenario(i, tag, today).disclosure.institution.code for i in range(12)}
                headers = {
                    code: {
                        "Content-Type": "application/json",
                        **await people.headers(officer(code)),
                    }
                    for code in codes
                }

                async def post(sc: Scenario, body: bytes) -> None:
                    code = sc.disclosure.institution.code
                    url = f"{gateway.url}/achievements"
                    async with session.post(url, data=body, headers=headers[code]) as r:
                        if r.status != 201:
                            text = await r.text()
                            raise RuntimeError(f"disclosure -> {r.status}: {text[:300]}")

                async def start(item: LifecycleInput) -> None:
                    await start_lifecycle(stack.client, item, task_queue)

                await _warm(stack, warmup, tag, today, book, post, start)
                cpu = Cpu(gateway.pid, dev_server_pid(stack.tmp))
                rounds = max(2, round(n / ROUND))
                per_round = [n // rounds + (r < n % rounds) for r in range(rounds)]
                async with profiling(gateway.pid):
                    for r, k in enumerate(per_round):
                        await _round(cpu, engine, floor, k, f"{tag}{r}", today, book, post, start)
            finally:
                await gateway.stop()
    details = {
        "n": n,
        "concurrency": CONCURRENCY,
        "rounds": max(2, round(n / ROUND)),
        "identity": "bearer token from the local OIDC issuer, verified by the gateway (RS256)",
        "worker": "none: the task queue is not polled, only the starts are measured",
        "cpu_ms_per_start": {
            side: {k: round(v / n * 1000, 3) for k, v in s.cpu.items()}
            for side, s in (("gateway", engine), ("bare", floor))
        },
    }
    return engine, floor, details


async def _warm(
    stack: Stack,
    k: int,
    tag: str,
    today: date,
    book: PolicyBook,
    post: Callable[[Scenario, bytes], Awaitable[None]],
    start: Callable[[LifecycleInput], Awaitable[None]],
) -> None:
    """Connections open, keys fetched, code paths warm on both sides before anything counts."""
    for i in range(k):
        sc = scenario(i, f"GW{tag}", today)
        await post(sc, disclosure_body(sc))
        await start(lifecycle_input(scenario(i, f"BW{tag}", today), book))


async def _round(
    cpu: Cpu,
    engine: Side,
    floor: Side,
    k: int,
    tag: str,
    today: date,
    book: PolicyBook,
    post: Callable[[Scenario, bytes], Awaitable[None]],
    start: Callable[[LifecycleInput], Awaitable[None]],
) -> None:
    # Bodies and inputs are built before the clock starts: the client's own work is not timed.
    inputs = [lifecycle_input(scenario(i, f"B{tag}", today), book) for i in range(k)]
    async with cpu.into(floor):
        await timed(floor, k, lambda i: start(inputs[i]))
    scs = [scenario(i, f"G{tag}", today) for i in range(k)]
    bodies = [disclosure_body(sc) for sc in scs]
    async with cpu.into(engine):
        await timed(engine, k, lambda i: post(scs[i], bodies[i]))


async def measure(size: Size) -> Result:
    started = time.perf_counter()
    engine, floor, details = await run(size)
    ms = 1000.0
    details["gateway_ms"] = {"max": max(engine.latencies) * ms, "wall_s": engine.wall}
    details["bare_ms"] = {"max": max(floor.latencies) * ms, "wall_s": floor.wall}
    note = (
        f"{details['n']} each at concurrency {CONCURRENCY}, alternating in "
        f"{details['rounds']} turns; the token check in the path (RS256, the local issuer)"
    )
    cpu = details["cpu_ms_per_start"]
    return Result(
        benchmark="gateway",
        size=size,
        figures=[
            Figure(
                "disclosures/s through the gateway",
                "1/s",
                engine.rate,
                floor.rate,
                0.85,
                "higher",
                floor_label=FLOOR_LABEL,
                note=note,
            ),
            Figure(
                "disclosure p50",
                "ms",
                percentile(engine.latencies, 50) * ms,
                percentile(floor.latencies, 50) * ms,
                None,
                "lower",
                floor_label=FLOOR_LABEL,
            ),
            Figure(
                "disclosure p99",
                "ms",
                percentile(engine.latencies, 99) * ms,
                percentile(floor.latencies, 99) * ms,
                1.5,
                "lower",
                floor_label=FLOOR_LABEL,
            ),
            Figure(
                "CPU per disclosure, gateway process",
                "ms",
                cpu["gateway"]["gateway"],
                cpu["bare"]["driver"],
                None,
                "lower",
                floor_label="the driver's CPU per bare start (a client starting it directly)",
                note="user+sys from /proc; the steadiest figure on a shared machine",
            ),
        ],
        details=details,
        seconds=time.perf_counter() - started,
    )
