"""`achievements fund show|use`: the transfer fund of an institution through the gateway.

A use is asked by an officer (the logged-in session) and approved by an approver of the same
institution, whose own access token is passed in ACHIEVEMENTS_APPROVER_TOKEN (never on the
command line, where other users of the machine could read it).
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated

import typer

from cli.gateway_client import EXIT_USAGE, Failed, call, fail, report
from schemas.fund import FundUseRequest, FundUseResult, FundView

fund_app = typer.Typer(help="The technology-transfer office's fund.", no_args_is_help=True)

Institution = Annotated[str, typer.Argument(help="Institution code, e.g. SYN-UNI")]
GatewayUrl = Annotated[str | None, typer.Option(help="Gateway URL")]
APPROVER_ENV = "ACHIEVEMENTS_APPROVER_TOKEN"


@fund_app.command("show")
def show(
    institution: Institution,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ledger as JSON")] = False,
    gateway_url: GatewayUrl = None,
) -> None:
    """The fund's balance and latest entries."""
    try:
        _, response = call(gateway_url, "GET", f"/funds/{institution}")
    except Failed as exc:
        report(exc)
    view = FundView.model_validate(response.json())
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
        return
    typer.echo(
        f"{view.institution}: balance {view.balance} CNY (accrued {view.accrued}, used {view.used})"
    )
    for e in view.entries:
        what = e.purpose or f"{e.achievement_id} {e.payment_event_id}"
        who = f"{e.actor}" + (f", approved by {e.approver}" if e.approver else "")
        typer.echo(
            f"  {e.business_at.date()} {e.kind.value:<7} {e.amount:>14} → {e.balance_after:>14}"
            f"  {what} ({who})"
        )


@fund_app.command("use")
def use(
    institution: Institution,
    amount: Annotated[str, typer.Option(help="CNY, e.g. 12000.00")],
    purpose: Annotated[str, typer.Option(help="What the money is for")],
    request_id: Annotated[
        str | None, typer.Option(help="Repeat a request safely with the same id (default: new)")
    ] = None,
    gateway_url: GatewayUrl = None,
) -> None:
    """Record a use of the fund, approved by the approver whose token is in
    ACHIEVEMENTS_APPROVER_TOKEN."""
    try:
        approval = _approver_token()
        body = FundUseRequest.model_validate(
            {
                "request_id": request_id or f"cli-{uuid.uuid4().hex[:12]}",
                "amount": amount,
                "purpose": purpose,
            }
        )
        _, response = call(
            gateway_url,
            "POST",
            f"/funds/{institution}/uses",
            body=body,
            options={"amount": "--amount", "purpose": "--purpose", "request_id": "--request-id"},
            extra_headers={"X-Approver-Token": approval},
        )
    except ValueError as exc:
        report(Failed(f"invalid input: {exc}", EXIT_USAGE))
    except Failed as exc:
        report(exc)
    result = FundUseResult.model_validate(response.json())
    again = " (already recorded)" if result.duplicate else ""
    typer.echo(f"{result.entry_id}: balance {result.balance} CNY{again}")


def _approver_token() -> str:
    token = os.environ.get(APPROVER_ENV, "").strip()
    if not token:
        fail(f"{APPROVER_ENV} must hold the approver's access token", EXIT_USAGE)
    return token


def register(app: typer.Typer) -> None:
    app.add_typer(fund_app, name="fund")
