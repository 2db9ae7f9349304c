"""`achievements`: one command line for the stack, the demo, the worker and people's steps."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from workers.settings import Settings

app = typer.Typer(
    help="Achievement Lifecycle Engine: disclosure → evaluation → proof of concept → "
    "transaction → incubation → reporting, on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The PostgreSQL projection store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _configure_logging() -> None:
    from workers.logging import configure

    configure(json=os.environ.get("ACHIEVEMENTS_LOG_JSON") == "1")


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="Where all state and logs live")] = Path(".data"),
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port")] = 8233,
    gateway_port: Annotated[int, typer.Option(help="Gateway HTTP port")] = 8300,
    registry_port: Annotated[int, typer.Option(help="Registry sandbox port")] = 8301,
    exchange_port: Annotated[int, typer.Option(help="Exchange sandbox port")] = 8302,
    metrics_port: Annotated[int, typer.Option(help="Worker Prometheus port (0: off)")] = 9464,
) -> None:
    """Start the embedded stack in the foreground; Ctrl-C stops all of it."""
    from cli.stack import Ports, run_dev

    settings = Settings(data_dir=data_dir)
    ports = Ports(temporal_port, ui_port, gateway_port, registry_port, exchange_port, metrics_port)
    raise typer.Exit(asyncio.run(run_dev(settings, ports)))


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many achievements")] = 20,
    exit_when_done: Annotated[
        bool, typer.Option(help="Stop the stack the demo started, and exit, at the end")
    ] = False,
    timeout: Annotated[float, typer.Option(min=10, help="Give up after this many seconds")] = 600,
    data_dir: Annotated[Path, typer.Option(help="Data folder of the stack")] = Path(".data"),
) -> None:
    """Disclose N synthetic achievements and drive them through all six stages."""
    from cli.demo import run_demo

    settings = Settings(data_dir=data_dir)
    raise typer.Exit(asyncio.run(run_demo(settings, count, exit_when_done, timeout)))


@app.command()
def worker() -> None:
    """Run a production worker (TEMPORAL_* standard env config, ACHIEVEMENTS_DATABASE_URL)."""
    from workers.worker import run_worker

    _configure_logging()
    asyncio.run(run_worker(Settings()))


@app.command(hidden=True)
def services(
    host: str = "127.0.0.1",
    gateway_port: int = 8300,
    registry_port: int = 8301,
    exchange_port: int = 8302,
) -> None:
    """The gateway and the sandboxes in one process (started by `achievements dev`)."""
    from cli.services import run_services

    _configure_logging()
    asyncio.run(run_services(Settings(), host, gateway_port, registry_port, exchange_port))


@db_app.command("migrate")
def db_migrate(
    database_url: Annotated[
        str | None, typer.Option(envvar="ACHIEVEMENTS_DATABASE_URL", help="PostgreSQL DSN")
    ] = None,
) -> None:
    """Apply pending migrations of the projection store."""
    from activities.store import migrate

    if not database_url:
        raise typer.BadParameter("is required", param_hint="--database-url")
    applied = asyncio.run(migrate(database_url))
    typer.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


if __name__ == "__main__":
    app()
