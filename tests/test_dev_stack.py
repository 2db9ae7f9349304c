"""`achievements dev`, `demo` and `stop` as a newcomer runs them: real processes, real binaries.

Each test starts the real embedded stack (Temporal dev server, embedded PostgreSQL, worker,
gateway and sandboxes) as a subprocess on ports of its own and a data folder of its own, then
kills parts of it, interrupts it or stops it from outside, and looks at what a person would
see: the console, stack.json, the health answer, a lifecycle moving on. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from helpers.eventually import assert_eventually

from cli.demo import Parties
from cli.running_stack import LOCK_FILE, STACK_FILE, pid_alive
from cli.samples import scenario
from cli.stack import PORT_OPTIONS
from core.settings import Settings
from sandboxes.identity_provider import SyntheticSignIn
from schemas.lifecycle import Stage

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
# Starting the whole stack on a loaded, shared machine: generous, only a broken stack waits.
START_SECONDS = 240.0


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def clean_env() -> dict[str, str]:
    """The environment of a newcomer's shell: nothing that points at another deployment."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "ACHIEVEMENTS_")) and k != "PYTEST_CURRENT_TEST"
    }


def achievements(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


@dataclass
class Layout:
    data_dir: Path
    ports: dict[str, int]

    def options(self) -> list[str]:
        return [
            arg
            for name, (_, option) in PORT_OPTIONS.items()
            for arg in (option, str(self.ports[name]))
        ]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            achievements(*args),
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, log: str) -> subprocess.Popen[str]:
        # Its own process group, as a terminal would give it: Ctrl-C goes to that group.
        return subprocess.Popen(
            achievements(*args),
            cwd=REPO,
            env=clean_env(),
            stdout=(self.data_dir.parent / log).open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def stack(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / STACK_FILE).read_text()))

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"


@pytest.fixture
def layout() -> Iterator[Layout]:
    # Under /tmp, not pytest's tmp_path: as root, embedded PostgreSQL runs as its own user,
    # which cannot enter pytest's private (0700) folder.
    folder = Path(tempfile.mkdtemp(prefix="achievements-dev-"))
    ports = free_ports(len(PORT_OPTIONS))
    yield Layout(folder / "data", dict(zip(PORT_OPTIONS, ports, strict=True)))
    shutil.rmtree(folder, ignore_errors=True)


def wait_for(check: Any, what: str, within: float = START_SECONDS) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        time.sleep(0.5)


def stopped_cleanly(layout: Layout, pids: list[int]) -> None:
    """Nothing of the stack is left: no child, no published stack, every port free again."""
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), f"pids {pids} gone", 30)
    assert not (layout.data_dir / STACK_FILE).exists()
    assert not (layout.data_dir / LOCK_FILE).exists()
    for port in layout.ports.values():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


@pytest_asyncio.fixture
async def dev(layout: Layout) -> AsyncIterator[subprocess.Popen[str]]:
    process = layout.start("dev", "--data-dir", str(layout.data_dir), *layout.options(), log="dev")
    try:
        await asyncio.to_thread(
            wait_for,
            lambda: (layout.data_dir / STACK_FILE).exists() or process.poll() is not None,
            "stack.json published",
        )
        assert process.poll() is None, (layout.data_dir.parent / "dev").read_text()
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            await asyncio.to_thread(process.wait, 120)


async def disclosed_and_moving(layout: Layout, http: httpx.AsyncClient) -> None:
    """A new demo lifecycle goes through its first external call (the registry) and on."""
    settings = Settings(
        gateway_url=layout.gateway, exchange_url=f"http://127.0.0.1:{layout.ports['exchange']}"
    )
    people = SyntheticSignIn(http, f"http://127.0.0.1:{layout.ports['issuer']}")
    parties = Parties(http, settings, people)
    sc = scenario(0, f"DEV{uuid.uuid4().hex[:8].upper()}", datetime.now(UTC).date())

    async def disclosed() -> None:
        try:
            await parties.disclose(sc)
        except (RuntimeError, httpx.HTTPError) as err:
            raise AssertionError(str(err)) from err

    await assert_eventually(disclosed, within=60, interval=1, what="disclosure accepted")

    async def registered_and_moved_on() -> None:
        try:
            state = await parties.state(sc)
        except (RuntimeError, httpx.HTTPError) as err:
            raise AssertionError(str(err)) from err
        assert state is not None and state.registration_number, state
        assert state.stage is not Stage.DISCLOSURE, state.stage

    await assert_eventually(
        registered_and_moved_on, within=120, interval=1, what="registered and past disclosure"
    )


async def test_a_killed_worker_and_postgres_come_back_and_stop_stops_all(
    layout: Layout, dev: subprocess.Popen[str]
) -> None:
    first = layout.stack()
    assert first["database_url"].startswith("postgresql://")
    assert ":@/" in first["database_url"]  # trust over the stack's own socket: no password
    assert os.stat(layout.data_dir / STACK_FILE).st_mode & 0o077 == 0
    async with httpx.AsyncClient(timeout=30) as http:
        health = await http.get(f"{layout.gateway}/healthz")
        assert health.json() == {"status": "ok", "temporal": "ok", "postgres": "ok"}

        # The worker dies: dev restarts it, says so, and publishes the new pid.
        os.kill(first["children"]["worker"], signal.SIGKILL)

        def worker_back() -> bool:
            pid = layout.stack()["children"]["worker"]
            return pid != first["children"]["worker"] and pid_alive(pid)

        await asyncio.to_thread(wait_for, worker_back, "worker restarted", 60)
        stack_log = (layout.data_dir / "logs" / "stack.log").read_text()
        assert "worker exited (code -9); restarting it in 1s" in stack_log
        assert "worker restarted" in stack_log
        await disclosed_and_moving(layout, http)

        # stack.json is enough for the commands run beside the stack, with nothing configured.
        data = ("--data-dir", str(layout.data_dir))
        migrated = await asyncio.to_thread(layout.run, "db", "migrate", *data)
        assert (migrated.returncode, migrated.stdout.strip()) == (0, "up to date"), migrated
        scheduled = await asyncio.to_thread(layout.run, "schedule", *data)
        assert scheduled.returncode == 0, scheduled.stderr
        assert "schedule annual-report is in place" in scheduled.stdout
        second = layout.start("worker", *data, log="second-worker")
        try:
            out = layout.data_dir.parent / "second-worker"
            await asyncio.to_thread(
                wait_for, lambda: "worker_started" in out.read_text(), "second worker up", 60
            )
            assert "Joining the embedded stack" in out.read_text()
            assert second.poll() is None
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 60)

        # PostgreSQL dies: dev starts it again on the same data folder and socket.
        postmaster = layout.data_dir / "postgres" / "postmaster.pid"
        pg_pid = int(postmaster.read_text().split()[0])
        os.kill(pg_pid, signal.SIGKILL)

        def postgres_back() -> bool:
            log = (layout.data_dir / "logs" / "stack.log").read_text()
            return "PostgreSQL restarted" in log

        await asyncio.to_thread(wait_for, postgres_back, "PostgreSQL restarted", 90)
        assert int(postmaster.read_text().split()[0]) != pg_pid
        assert (
            "PostgreSQL stopped; restarting it"
            in (layout.data_dir / "logs" / "stack.log").read_text()
        )

        async def healthy() -> None:
            r = await http.get(f"{layout.gateway}/healthz")
            assert r.status_code == 200, r.text

        await assert_eventually(healthy, within=60, interval=1, what="healthy again")
        await disclosed_and_moving(layout, http)
    assert dev.poll() is None  # nothing of this stopped the stack

    # `achievements stop` from another terminal: everything goes, in one line.
    pids = [dev.pid, *layout.stack()["children"].values()]
    stopped = await asyncio.to_thread(
        layout.run, "stop", "--data-dir", str(layout.data_dir), timeout=240
    )
    stack_log = (layout.data_dir / "logs" / "stack.log").read_text()
    assert stopped.returncode == 0, (stopped.stderr, stack_log)
    assert "Stopped: no process of the stack is left running." in stopped.stderr
    assert dev.wait(timeout=10) == 0
    await asyncio.to_thread(stopped_cleanly, layout, pids)
    console = (layout.data_dir.parent / "dev").read_text()
    assert "Traceback" not in console and "XDG_RUNTIME_DIR" not in console
    assert "Encryption     off" in console


def test_a_port_in_use_is_named_with_its_option(layout: Layout) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", layout.ports["ui"]))
        taken.listen()
        result = layout.run("demo", "--data-dir", str(layout.data_dir), *layout.options())
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert f"Port {layout.ports['ui']} (Temporal Web UI) is already in use" in lines[0]
    assert "--ui-port" in lines[0]
    assert not (layout.data_dir / LOCK_FILE).exists()


@pytest.mark.parametrize(
    "command",
    [
        ["schedule"],
        ["db", "migrate"],
        ["worker"],
        ["stop"],
    ],
    ids=lambda c: " ".join(c),
)
def test_commands_without_a_stack_say_so_in_one_line(layout: Layout, command: list[str]) -> None:
    result = layout.run(*command, "--data-dir", str(layout.data_dir), timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output and "Warning" not in output, output
    assert len(output.splitlines()) == 1, output
    assert "no stack is running from" in output
    assert result.returncode == (0 if command == ["stop"] else 1)


def demo_line(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


@pytest.fixture
def demo_processes() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:  # a failed test leaves nothing behind
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=150)


def test_a_second_demo_joins_and_ctrl_c_stops_the_first_ones_stack(
    layout: Layout, demo_processes: list[subprocess.Popen[str]]
) -> None:
    args = ["demo", "--count", "1", "--data-dir", str(layout.data_dir), *layout.options()]
    first = layout.start(*args, log="first")
    demo_processes.append(first)
    out_first = layout.data_dir.parent / "first"
    wait_for(lambda: demo_line(out_first, "Starting the embedded stack"), "first demo starts", 60)
    second = layout.start(*args, "--timeout", "300", log="second")
    demo_processes.append(second)
    # The second one waits for the stack the first is starting, and runs on it.
    assert second.wait(timeout=420) == 0, (layout.data_dir.parent / "second").read_text()
    out_second = (layout.data_dir.parent / "second").read_text()
    assert "Waiting for the stack that pid" in out_second
    assert "1 of 1 achievements completed" in out_second
    assert "Traceback" not in out_second

    stack = layout.stack()
    pids = [stack["pid"], *stack["children"].values()]
    # Ctrl-C in the first demo's terminal: SIGINT to its whole process group.
    wait_for(lambda: demo_line(out_first, "Press Ctrl-C"), "first demo done", 300)
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=150) == 130
    text = out_first.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert text.strip().splitlines()[-1] == (
        "Interrupted: stopped the stack the demo started; nothing is left running."
    )
    stopped_cleanly(layout, pids)
