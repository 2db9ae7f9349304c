"""`achievements`: one command line for the stack, the demo, the worker and people's steps."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.fund import register as register_fund
from cli.login import register as register_login
from cli.people import register as register_people
from core.settings import Settings

app = typer.Typer(
    help="Achievement Lifecycle Engine: disclosure → evaluation → proof of concept → "
    "transaction → incubation → reporting, on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The PostgreSQL projection store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
# People's steps (status, review, decide, activate, withdraw, exempt, disclose) via the gateway.
register_people(app)
# A person's session at the identity provider: login, logout, whoami.
register_login(app)
# The transfer fund: fund show, fund use (an officer with an approver's token).
register_fund(app)


def _exit_now(code: int = 0) -> None:
    """Leave without interpreter finalization: with a Temporal client made in this process,
    the SDK's Rust core may abort there ("Fatal Python error: PyGILState_Release", sdk-python
    #300) after the command has done its work and said so."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _configure_logging() -> None:
    from core.logging import configure

    configure(json=os.environ.get("ACHIEVEMENTS_LOG_JSON") == "1")


DataDir = Annotated[Path, typer.Option(help="Where the stack's state and logs live")]
# The embedded stack's ports, the same options for `dev` and `demo`.
TemporalPort = Annotated[int, typer.Option(help="Temporal frontend port")]
UiPort = Annotated[int, typer.Option(help="Temporal Web UI port")]
GatewayPort = Annotated[int, typer.Option(help="Gateway HTTP port")]
RegistryPort = Annotated[int, typer.Option(help="Registry sandbox port")]
ExchangePort = Annotated[int, typer.Option(help="Exchange sandbox port")]
MetricsPort = Annotated[int, typer.Option(help="Worker Prometheus port (0: off)")]
IssuerPort = Annotated[int, typer.Option(help="Local OIDC issuer port")]


@app.command()
def dev(
    data_dir: DataDir = Path(".data"),
    temporal_port: TemporalPort = 7233,
    ui_port: UiPort = 8233,
    gateway_port: GatewayPort = 8300,
    registry_port: RegistryPort = 8301,
    exchange_port: ExchangePort = 8302,
    metrics_port: MetricsPort = 9464,
    issuer_port: IssuerPort = 8303,
) -> None:
    """Start the embedded stack in the foreground; Ctrl-C stops all of it."""
    from cli.stack import Ports, run_dev

    settings = Settings(data_dir=data_dir)
    ports = Ports(
        temporal_port,
        ui_port,
        gateway_port,
        registry_port,
        exchange_port,
        metrics_port,
        issuer_port,
    )
    _exit_now(asyncio.run(run_dev(settings, ports)))


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many achievements")] = 20,
    exit_when_done: Annotated[
        bool, typer.Option(help="Stop the stack the demo started, and exit, at the end")
    ] = False,
    timeout: Annotated[float, typer.Option(min=10, help="Give up after this many seconds")] = 600,
    data_dir: DataDir = Path(".data"),
    temporal_port: TemporalPort = 7233,
    ui_port: UiPort = 8233,
    gateway_port: GatewayPort = 8300,
    registry_port: RegistryPort = 8301,
    exchange_port: ExchangePort = 8302,
    metrics_port: MetricsPort = 9464,
    issuer_port: IssuerPort = 8303,
) -> None:
    """Disclose N synthetic achievements and drive them through all six stages."""
    from cli.demo import run_demo
    from cli.stack import Ports

    ports = Ports(
        temporal_port,
        ui_port,
        gateway_port,
        registry_port,
        exchange_port,
        metrics_port,
        issuer_port,
    )
    settings = Settings(
        data_dir=data_dir,
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        exchange_url=f"http://127.0.0.1:{exchange_port}",
        registry_url=f"http://127.0.0.1:{registry_port}",
    )
    raise typer.Exit(asyncio.run(run_demo(settings, ports, count, exit_when_done, timeout)))


@app.command()
def stop(
    data_dir: DataDir = Path(".data"),
    timeout: Annotated[float, typer.Option(min=1, help="Wait at most this many seconds")] = 180,
) -> None:
    """Stop the stack running from the data folder (as Ctrl-C in its terminal would)."""
    from cli.stack_control import stop_stack

    raise typer.Exit(stop_stack(data_dir, timeout))


@app.command()
def worker(data_dir: DataDir = Path(".data")) -> None:
    """Run a worker (TEMPORAL_* env config, ACHIEVEMENTS_DATABASE_URL), else join the stack's.

    With neither TEMPORAL_ADDRESS nor ACHIEVEMENTS_DATABASE_URL set, it joins the embedded
    stack running from the data folder (its stack.json).
    """
    from cli.stack_control import fail, join_running_stack
    from workers.worker import run_worker

    join_running_stack(data_dir)
    _configure_logging()
    try:
        asyncio.run(run_worker(Settings()))
    except OSError as err:  # PostgreSQL (or another dependency) refused: its address, no DSN
        fail(f"the worker could not start: {type(err).__name__}: {err}")
    except RuntimeError as err:
        if "client connect" not in str(err):
            raise
        fail(f"the worker could not reach Temporal: {err}")
    _exit_now()


@app.command(hidden=True)
def services(
    host: str = "127.0.0.1",
    gateway_port: int = 8300,
    registry_port: int = 8301,
    exchange_port: int = 8302,
    issuer_port: int = 8303,
) -> None:
    """The gateway and the sandboxes in one process (started by `achievements dev`)."""
    from cli.services import run_services

    _configure_logging()
    asyncio.run(
        run_services(Settings(), host, gateway_port, registry_port, exchange_port, issuer_port)
    )
    _exit_now()


@app.command()
def gateway(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8300,
) -> None:
    """Run the HTTP gateway alone (production: ACHIEVEMENTS_OIDC_ISSUER, TEMPORAL_*, DB URL)."""
    from cli.services import run_gateway

    _configure_logging()
    asyncio.run(run_gateway(Settings(), host, port))
    _exit_now()


@app.command()
def sandboxes(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    registry_port: Annotated[int, typer.Option(help="Registry sandbox port")] = 8301,
    exchange_port: Annotated[int, typer.Option(help="Exchange sandbox port")] = 8302,
    issuer_port: Annotated[int, typer.Option(help="Local OIDC issuer port (0: none)")] = 8303,
) -> None:
    """Run the test-mode registry and exchange and the local OIDC issuer (never in production)."""
    from cli.services import run_sandboxes

    _configure_logging()
    asyncio.run(run_sandboxes(Settings(), host, registry_port, exchange_port, issuer_port))


@db_app.command("migrate")
def db_migrate(
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="ACHIEVEMENTS_DATABASE_URL",
            help="PostgreSQL DSN; default: the embedded stack's (stack.json)",
        ),
    ] = None,
    data_dir: DataDir = Path(".data"),
) -> None:
    """Apply pending migrations of the projection store."""
    from cli.stack_control import database_of_running_stack, migrate_or_fail

    applied = migrate_or_fail(database_url or database_of_running_stack(data_dir))
    typer.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


# ---------------------------------------------------------------------- read side

GatewayUrl = Annotated[
    str | None,
    typer.Option(help="Gateway URL; default: ACHIEVEMENTS_GATEWAY_URL, else the running stack's"),
]


@app.command("list")
def list_achievements(
    stage: Annotated[str | None, typer.Option(help="e.g. transaction, incubation")] = None,
    institution: Annotated[
        str | None, typer.Option(help="Institution code (a regulator's filter)")
    ] = None,
    field: Annotated[str | None, typer.Option(help="Technology field")] = None,
    mode: Annotated[str | None, typer.Option(help="Transformation mode")] = None,
    overdue: Annotated[
        bool | None,
        typer.Option("--overdue/--not-overdue", help="Waiting past its deadline (or not)"),
    ] = None,
    mandatory_due_before: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Must still be listed (mandatory listing, plan item 8), due before this date: "
            "an open obligation, as the UI's MandatoryListingDue; none once exempted, listed, "
            "dealt or contracted",
        ),
    ] = None,
    needs_attention: Annotated[
        bool | None,
        typer.Option(
            "--needs-attention/--no-attention-needed",
            help="A person must act (the UI's `NeedsAttentionSince IS NOT NULL`), or not",
        ),
    ] = None,
    links: Annotated[bool, typer.Option(help="Add each row's Temporal UI link")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as JSON")] = False,
    gateway_url: GatewayUrl = None,
) -> None:
    """List the achievements you may see (from PostgreSQL, not visibility), a page at a time."""
    from rich.console import Console

    from cli.gateway_client import Failed, report
    from cli.reads import list_page, page_table
    from schemas.disclosure import TechnologyField, TransformationMode
    from schemas.lifecycle import Stage
    from schemas.read_models import AchievementFilter

    for value, enum, hint in (
        (stage, Stage, "--stage"),
        (field, TechnologyField, "--field"),
        (mode, TransformationMode, "--mode"),
    ):
        if value is not None and value not in {m.value for m in enum}:
            known = ", ".join(m.value for m in enum)
            raise typer.BadParameter(f"{value!r} is not one of: {known}", param_hint=hint)
    where = AchievementFilter(
        stage=stage,
        institution=institution,
        field=field,
        mode=mode,
        overdue=overdue,
        mandatory_due_before=mandatory_due_before.date() if mandatory_due_before else None,
        needs_attention=needs_attention,
    )
    empty = AchievementFilter()
    try:
        page = list_page(gateway_url, where, limit, cursor)
    except Failed as exc:
        report(exc)
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    if not page.items:
        typer.echo("no achievement matched" + (" these filters" if where != empty else ""))
        return
    Console().print(page_table(page, links))
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}", err=True)


@app.command()
def events(
    after: Annotated[int, typer.Option(min=0, help="Print events after this seq")] = 0,
    follow: Annotated[bool, typer.Option(help="Keep polling for new events")] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Print at most this many events, then stop")
    ] = None,
    poll_seconds: Annotated[float, typer.Option(min=0.1, help="Poll interval")] = 2.0,
    gateway_url: GatewayUrl = None,
) -> None:
    """Print your lifecycle-event feed as JSON lines (resume with --after the last seq)."""
    import httpx

    from cli.gateway_client import Failed, authorization, report
    from cli.gateway_client import gateway_url as resolve_gateway
    from cli.reads import ReadError, tail_events

    url = resolve_gateway(gateway_url)
    try:
        headers = authorization()
    except Failed as exc:
        report(exc)

    async def tail() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30.0, headers=headers) as http:
            await tail_events(
                http,
                after,
                follow,
                limit,
                poll_seconds,
                on_error=lambda message: typer.echo(message, err=True),
            )

    try:
        asyncio.run(tail())
    except ReadError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@app.command()
def report(
    year: Annotated[int, typer.Option(min=2000, max=2100, help="Calendar year")],
    institution: Annotated[
        str | None, typer.Option(help="Institution code; default: yours (a regulator: all)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, csv, html or pdf")] = "json",
    lang: Annotated[str, typer.Option(help="HTML and PDF: zh (Chinese) or en")] = "zh",
    pdf: Annotated[
        Path | None, typer.Option(help="Write the PDF here (same as --format pdf --output)")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
    gateway_url: GatewayUrl = None,
) -> None:
    """The annual report built from recorded events (the same code as the scheduled one)."""
    from cli.gateway_client import Failed
    from cli.gateway_client import report as fail_with
    from cli.reads import fetch_report

    if fmt not in ("json", "csv", "html", "pdf"):
        raise typer.BadParameter("must be json, csv, html or pdf", param_hint="--format")
    if lang not in ("zh", "en"):
        raise typer.BadParameter("must be zh or en", param_hint="--lang")
    if pdf is not None:
        if output is not None:
            raise typer.BadParameter("give --pdf or --output, not both", param_hint="--pdf")
        fmt, output = "pdf", pdf
    if fmt == "pdf" and output is None:
        raise typer.BadParameter("a PDF goes to a file: add --output FILE", param_hint="--format")
    try:
        content = fetch_report(gateway_url, year, institution, fmt, lang)
    except Failed as exc:
        fail_with(exc)
    if output is None:
        typer.echo(content.decode("utf-8"), nl=False)
    else:
        output.write_bytes(content)
        typer.echo(f"wrote {output.resolve()}", err=True)


@app.command()
def schedule(data_dir: DataDir = Path(".data")) -> None:
    """Create or update the `annual-report` Temporal Schedule (TEMPORAL_* env config).

    Without TEMPORAL_ADDRESS, on the embedded stack running from the data folder.
    """
    from cli.stack_control import fail, join_running_stack
    from core.temporal import connect
    from workers.schedules import ensure_annual_report_schedule

    join_running_stack(data_dir, quiet=True)

    async def ensure() -> str:
        settings = Settings()
        client = await connect(settings=settings)
        handle = await ensure_annual_report_schedule(client, settings.task_queue)
        return handle.id

    try:
        schedule_id = asyncio.run(ensure())
    except RuntimeError as err:  # the SDK's "Failed client connect"
        fail(f"cannot reach Temporal ({err}); start the stack with `achievements dev`")
    typer.echo(f"schedule {schedule_id} is in place (10 January, 02:00 UTC)")
    _exit_now()


BENCHMARKS = (
    "throughput",
    "cpu",
    "latency",
    "parked",
    "report",
    "timeskip",
    "gateway",
    "scaleout",
    "all",
)


@app.command()
def bench(
    what: Annotated[
        str, typer.Argument(help=f"{'|'.join(BENCHMARKS)}, or a comma-separated list")
    ] = "all",
    size: Annotated[
        str, typer.Option(help="tiny: seconds, a smoke check; full: the real measurement")
    ] = "tiny",
) -> None:
    """Benchmarks: each figure a ratio to a bare workflow measured in the same run.

    Prints a table and writes JSON to bench/results/ (see docs/performance.md).
    """
    names = [n.strip() for n in what.split(",")]
    for name in names:
        if name not in BENCHMARKS:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(BENCHMARKS)}")
    if size not in ("tiny", "full"):
        raise typer.BadParameter("must be tiny or full", param_hint="--size")
    from bench.run import main as run_benchmarks  # late: the benchmarks load the whole stack

    run_benchmarks(what, size)  # type: ignore[arg-type]
    _exit_now()


if __name__ == "__main__":
    app()
