"""The stack under the demo: the one up, the one being started (wait and join), or a new one.

The demo holds the stack lock while it starts `achievements dev` (which takes the lock over),
so two demos started together share one stack; a port in use is named before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
from rich.console import Console

from cli import running_stack
from cli.stack import Ports, StackError
from core.settings import Settings

console = Console()


async def stack_up(http: httpx.AsyncClient, settings: Settings) -> bool:
    try:
        response = await http.get(f"{settings.gateway_url}/healthz", timeout=3.0)
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def start_stack(settings: Settings, ports: Ports) -> subprocess.Popen[bytes]:
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / "dev-console.log").open("ab")
    console.print(f"Starting the embedded stack (console log: {logs / 'dev-console.log'})…")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "dev",
            "--data-dir",
            str(settings.data_dir),
            *ports.options(),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # Its own session: Ctrl-C in the demo's terminal reaches the demo only, which then
        # stops this stack in order (rather than every part at once, mid-start).
        start_new_session=True,
    )
    out.close()
    return process


def why_it_failed(settings: Settings) -> str:
    """The stack's own one-line reason (its last ✗ line), else where to look."""
    log = settings.data_dir / "logs" / "dev-console.log"
    with contextlib.suppress(OSError):
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if line.startswith("✗"):
                return line.removeprefix("✗").strip()
    return f"see {log}"


async def wait_up(
    http: httpx.AsyncClient, settings: Settings, alive: Callable[[], bool], within: float
) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await stack_up(http, settings):
            return True
        if not alive():
            return False
        await asyncio.sleep(0.5)
    return False


async def ensure_stack(
    http: httpx.AsyncClient, settings: Settings, ports: Ports
) -> subprocess.Popen[bytes] | None:
    """A stack to run on: the one up, the one being started (wait for it), or a new one.

    Returns the process this demo started (None when it joined another's); raises
    DemoStopped with a one-line reason when there is no stack to run on.
    """
    if await stack_up(http, settings):
        return None
    try:
        # Held from here: a second demo now waits for this stack instead of starting its own.
        running_stack.take_lock(settings.data_dir)
    except running_stack.StackBusy as busy:
        owner = busy.pid
        console.print(f"Waiting for the stack that pid {owner} is starting…")
        if await wait_up(http, settings, lambda: running_stack.pid_alive(owner), 180):
            return None
        raise DemoStopped(
            f"the stack of pid {owner} did not come up; {why_it_failed(settings)}"
        ) from None
    try:
        ports.check_free()
        started = start_stack(settings, ports)
        if await wait_up(http, settings, lambda: started.poll() is None, 180):
            return started
        stop(started)
        raise DemoStopped(f"the stack did not start: {why_it_failed(settings)}")
    except StackError as err:
        raise DemoStopped(str(err)) from None
    finally:
        running_stack.release_lock(settings.data_dir)  # dev holds its own once it runs


class DemoStopped(Exception):
    """Why the demo cannot go on, in one line."""


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as Ctrl-C in its own terminal: it stops its parts in order, then itself."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
