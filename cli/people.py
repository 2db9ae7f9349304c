"""People's steps on an achievement, through the gateway: status, review, decide, activate,
withdraw, exempt, go/no-go and disclose.

Who acts is whoever logged in (`achievements login`): the gateway takes identity from the
token, so no command has a "by" option. Options are checked with the gateway's own request
models first, so a mistake is named by its option before anything is sent.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from cli.gateway_client import (
    EXIT_USAGE,
    Failed,
    M,
    build,
    call,
    check_id,
    fail,
    field_lines,
    option_name,
    report,
    update,
)
from cli.status_view import render_archive, render_brief, render_status
from schemas.disclosure import TransformationMode
from schemas.evaluation import Recommendation
from schemas.gateway_api import (
    AchievementBrief,
    ActivationRequest,
    ArchivedAchievement,
    DecisionRequest,
    DisclosureRequest,
    ExemptionRequest,
    GoNoGoRequest,
    ReviewRequest,
    WithdrawalRequest,
)
from schemas.lifecycle import LifecycleState

ROUTES = ", ".join(r.value for r in Recommendation)
MODES = ", ".join(m.value for m in TransformationMode)

GatewayUrl = Annotated[
    str | None,
    typer.Option(
        "--gateway-url",
        help="Gateway base URL (default: ACHIEVEMENTS_GATEWAY_URL, else the running stack's)",
        show_default=False,
    ),
]
AchievementArg = Annotated[str, typer.Argument(metavar="ID", help="Achievement id, e.g. UNI-001")]


# ---------------------------------------------------------------------------- commands


def status(
    achievement_id: AchievementArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw state as JSON")] = False,
    gateway_url: GatewayUrl = None,
) -> None:
    """Where an achievement stands: stage, what it waits for, listings, deal, payments."""
    try:
        check_id(achievement_id)
        _, response = call(
            gateway_url, "GET", f"/achievements/{achievement_id}", achievement_id=achievement_id
        )
    except Failed as exc:
        report(exc)
    body = response.json()
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    try:
        # The whole state for the institution and the regulator; a brief for experts and funds.
        if body.get("source") == "archive":  # closed and past the namespace's retention
            Console().print(render_archive(ArchivedAchievement.model_validate(body)))
        elif "disclosure" in body:
            state = LifecycleState.model_validate(body)
            Console().print(render_status(state, ui_url=body.get("ui_url")))
        else:
            Console().print(render_brief(AchievementBrief.model_validate(body)))
    except ValidationError:
        # A gateway of another version: say so rather than print a traceback.
        report(Failed("the gateway's answer does not match this CLI's model; try --json"))


def review(
    achievement_id: AchievementArg,
    novelty: Annotated[int, typer.Option(help="Score 1-5")],
    maturity: Annotated[int, typer.Option(help="Score 1-5")],
    market: Annotated[int, typer.Option(help="Score 1-5")],
    ip_strength: Annotated[int, typer.Option(help="Score 1-5")],
    recommendation: Annotated[str, typer.Option(help=f"One of: {ROUTES}")],
    comment: Annotated[str, typer.Option(help="Free text for the committee")] = "",
    gateway_url: GatewayUrl = None,
) -> None:
    """Submit your scored review as an assigned expert (the achievement must be in evaluation)."""
    options = {
        "novelty": "--novelty",
        "maturity": "--maturity",
        "market": "--market",
        "ip_strength": "--ip-strength",
        "recommendation": "--recommendation",
        "comment": "--comment",
    }
    try:
        body = build(
            ReviewRequest,
            options,
            achievement_id,
            novelty=novelty,
            maturity=maturity,
            market=market,
            ip_strength=ip_strength,
            recommendation=recommendation,
            comment=comment,
        )
        count = update(gateway_url, achievement_id, "reviews", body, options)
    except Failed as exc:
        report(exc)
    typer.echo(f"your review of {achievement_id} is recorded ({count} so far)")


def decide(
    achievement_id: AchievementArg,
    route: Annotated[str, typer.Option(help=f"One of: {ROUTES}")],
    reason: Annotated[str, typer.Option(help="Why (at least 3 characters)")],
    gateway_url: GatewayUrl = None,
) -> None:
    """Route the achievement as its institution's officer (e.g. after a review escalation)."""
    options = {"route": "--route", "reason": "--reason"}
    try:
        body = build(DecisionRequest, options, achievement_id, route=route, reason=reason)
        routed = update(gateway_url, achievement_id, "decision", body, options)
    except Failed as exc:
        report(exc)
    typer.echo(f"{achievement_id} routed to {routed}")


def activate(
    achievement_id: AchievementArg,
    mode: Annotated[list[str], typer.Option(help=f"Repeatable; one of: {MODES}")],
    reason: Annotated[str, typer.Option(help="Why now")] = "",
    gateway_url: GatewayUrl = None,
) -> None:
    """Wake a dormant scientific resource with the modes it will be transformed by."""
    options = {"modes": "--mode", "reason": "--reason"}
    try:
        body = build(ActivationRequest, options, achievement_id, modes=mode, reason=reason)
        stage = update(gateway_url, achievement_id, "activate", body, options)
    except Failed as exc:
        report(exc)
    typer.echo(f"{achievement_id} activated: now in {stage}")


def withdraw(
    achievement_id: AchievementArg,
    reason: Annotated[str, typer.Option(help="Why (at least 3 characters)")],
    abandon: Annotated[
        bool, typer.Option("--abandon", help="Abandon (after evaluation) rather than withdraw")
    ] = False,
    gateway_url: GatewayUrl = None,
) -> None:
    """Withdraw or abandon the achievement; open listings are withdrawn from the exchanges."""
    options = {"reason": "--reason", "abandon": "--abandon"}
    try:
        body = build(WithdrawalRequest, options, achievement_id, reason=reason, abandon=abandon)
        outcome = update(gateway_url, achievement_id, "withdraw", body, options)
    except Failed as exc:
        report(exc)
    typer.echo(f"{achievement_id}: {outcome}")


def exempt(
    achievement_id: AchievementArg,
    justification: Annotated[str, typer.Option(help="Why (at least 10 characters)")],
    gateway_url: GatewayUrl = None,
) -> None:
    """Exempt a municipally funded achievement from mandatory listing (approvers; item 8)."""
    options = {"justification": "--justification"}
    try:
        body = build(ExemptionRequest, options, achievement_id, justification=justification)
        outcome = update(gateway_url, achievement_id, "exemption", body, options)
    except Failed as exc:
        report(exc)
    typer.echo(f"{achievement_id}: {outcome} from mandatory listing")


def go_no_go(
    achievement_id: AchievementArg,
    technical: Annotated[
        bool, typer.Option("--technical/--not-technical", help="Technically feasible?")
    ],
    market: Annotated[bool, typer.Option("--market/--not-market", help="Feasible on the market?")],
    reason: Annotated[str, typer.Option(help="Why")] = "",
    gateway_url: GatewayUrl = None,
) -> None:
    """Record the proof-of-concept gate as the fund's officer: go needs both feasibilities."""
    options = {"technical_feasible": "--technical", "market_feasible": "--market"}
    try:
        body = build(
            GoNoGoRequest,
            options,
            achievement_id,
            technical_feasible=technical,
            market_feasible=market,
            reason=reason,
        )
        go = update(gateway_url, achievement_id, "poc/decision", body, options)
    except Failed as exc:
        report(exc)
    typer.echo(f"{achievement_id}: proof of concept {'go' if go else 'no-go'}")


def disclose(
    file: Annotated[
        str, typer.Argument(metavar="FILE.json", help="A DisclosureRequest as JSON; - for stdin")
    ],
    gateway_url: GatewayUrl = None,
) -> None:
    """Disclose an achievement of your institution and start its lifecycle (POST /achievements)."""
    try:
        text = _read(file)
        request = _parse_disclosure(DisclosureRequest, text, file)
        aid = request.disclosure.achievement_id
        # Send the bytes as written: the gateway refuses float money, which a re-dump would hide.
        status_code, response = call(
            gateway_url, "POST", "/achievements", raw=text.encode(), options={"": file}
        )
    except Failed as exc:
        report(exc)
    started = response.json()
    if status_code == 200 and started.get("duplicate"):
        typer.echo(f"{aid} was already disclosed with this content: nothing new started")
    else:
        typer.echo(f"{aid} disclosed: workflow {started['workflow_id']} run {started['run_id']}")
    typer.echo(f"policy {started['policy_version']}; see `achievements status {aid}`")


def _read(file: str) -> str:
    try:
        if file == "-":
            return sys.stdin.read()
        with open(file, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}", EXIT_USAGE)


def _parse_disclosure(model: type[M], text: str, file: str) -> M:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = [
            (option_name(e["loc"], {"": file}), e["msg"]) for e in exc.errors(include_input=False)
        ]
        fail(f"{file} is not a valid disclosure request:\n" + field_lines(errors), EXIT_USAGE)


def register(app: typer.Typer) -> None:
    """Add the people's commands to the `achievements` app."""
    for command in (status, disclose, review, decide, activate, withdraw, exempt):
        app.command()(command)
    app.command("go-no-go")(go_no_go)
