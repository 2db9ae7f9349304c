"""Commands that act on the embedded stack from outside it: stop it, join it, find its database.

Each failure is one line on stderr and exit code 1, never a traceback: these are the commands
a newcomer runs before (or after) the stack is up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import NoReturn

import asyncpg
import typer

from cli import running_stack


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def stop_stack(data_dir: Path, timeout: float) -> int:
    """SIGTERM to the `dev` that owns the data folder, then wait until it has stopped it all."""
    pid = running_stack.owner(data_dir)
    if pid is None:
        typer.echo(f"nothing to stop: {running_stack.no_stack(data_dir)}", err=True)
        return 0
    typer.echo(f"Stopping the stack (pid {pid}) running from {data_dir}…", err=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    # The lock goes last, once every part has stopped.
    while running_stack.owner(data_dir) == pid:
        if time.monotonic() > deadline:
            fail(f"the stack (pid {pid}) did not stop in {timeout:.0f}s; see {data_dir}/logs")
        time.sleep(0.2)
    typer.echo("Stopped: no process of the stack is left running.", err=True)
    return 0


def join_running_stack(data_dir: Path, *, quiet: bool = False) -> None:
    """With no Temporal address and no database configured, use the running embedded stack's.

    Only fills in what the environment leaves unset, so a deployment's configuration always
    wins; with neither configured nor a stack running, the command goes on to its own error.
    """
    if configured_elsewhere():
        return
    stack = running_stack.running(data_dir)
    if stack is None:
        fail(f"{running_stack.no_stack(data_dir)}, or set TEMPORAL_ADDRESS")
    for name, value in stack.worker_env().items():
        os.environ.setdefault(name, value)
    if not quiet:
        typer.echo(
            f"Joining the embedded stack (pid {stack.pid}) at {stack.temporal_address} "
            f"(from {data_dir / running_stack.STACK_FILE})",
            err=True,
        )


def configured_elsewhere() -> bool:
    """A Temporal connection or a database is configured (environment, profile or .env)."""
    from core.settings import Settings

    temporal = ("TEMPORAL_ADDRESS", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE")
    return any(os.environ.get(name) for name in temporal) or Settings().database_url is not None


def database_of_running_stack(data_dir: Path) -> str:
    stack = running_stack.running(data_dir)
    if stack is None:
        fail(
            "no database: pass --database-url or set ACHIEVEMENTS_DATABASE_URL; "
            + running_stack.no_stack(data_dir)
        )
    return stack.database_url


def migrate_or_fail(dsn: str) -> list[str]:
    from activities.store import migrate

    try:
        return asyncio.run(migrate(dsn))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        # The type only: the DSN (and so any password in it) stays out of the message.
        fail(f"cannot reach PostgreSQL ({type(err).__name__}); is the database up?")
