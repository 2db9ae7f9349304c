"""People's steps on an achievement, through the gateway: status, review, decide, activate,
withdraw, exempt and disclose.

Options are checked here with the same pydantic models the gateway uses, so a mistake is named
(by its option) before anything is sent. Exit codes: 0 done; 1 the gateway refused (404, 409,
422, 5xx); 2 bad options or input file; 3 the gateway is not reachable.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas.commands import Activation, MandatoryListingExemption, Withdrawal
from schemas.disclosure import ACHIEVEMENT_ID_PATTERN, TransformationMode
from schemas.evaluation import OperatorDecision, Recommendation, Review
from schemas.lifecycle import LifecycleState, Stage
from workers.settings import Settings

M = TypeVar("M", bound=BaseModel)

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# Updates wait for the workflow to accept them; a busy worker can take a few seconds.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
ROUTES = ", ".join(r.value for r in Recommendation)
MODES = ", ".join(m.value for m in TransformationMode)

GatewayUrl = Annotated[
    str | None,
    typer.Option(
        "--gateway-url",
        envvar="ACHIEVEMENTS_GATEWAY_URL",
        help="Gateway base URL (default: ACHIEVEMENTS_GATEWAY_URL, else http://127.0.0.1:8300)",
        show_default=False,
    ),
]
AchievementArg = Annotated[str, typer.Argument(metavar="ID", help="Achievement id, e.g. UNI-001")]
By = Annotated[str, typer.Option("--by", help="Who does it (name or staff id)")]


class Failed(Exception):
    """A clear, already-worded error for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    raise Failed(message, code)


def _report(error: Failed) -> NoReturn:
    # Plain echo, not rich: messages carry user text that must not be read as markup.
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(error.code)


# ---------------------------------------------------------------------------- local checks


def _option_name(loc: Sequence[int | str], options: dict[str, str]) -> str:
    """A pydantic error location as the user typed it: the option, or the JSON path."""
    if not loc:
        return options.get("", "input")
    head, rest = str(loc[0]), [str(p) for p in loc[1:]]
    if head in options:
        # A list option (e.g. --mode) names which occurrence was wrong.
        return options[head] + (f" #{int(rest[0]) + 1}" if rest and rest[0].isdigit() else "")
    return ".".join([head, *rest])


def _field_lines(errors: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"  {name}: {message}" for name, message in errors)


def _id_error(achievement_id: str) -> tuple[str, str] | None:
    if re.fullmatch(ACHIEVEMENT_ID_PATTERN, achievement_id):
        return None
    return (
        "ID",
        f"{achievement_id!r} is not an achievement id (3-63 capital letters, digits "
        "and dashes, e.g. UNI-2024-001)",
    )


def _build(model: type[M], options: dict[str, str], achievement_id: str, **values: Any) -> M:
    """Validate the id and options with the gateway's own model; every bad one named at once."""
    errors = [e for e in [_id_error(achievement_id)] if e]
    try:
        built = model.model_validate(values)
    except ValidationError as exc:
        errors += [
            (_option_name(e["loc"], options), e["msg"]) for e in exc.errors(include_input=False)
        ]
    if errors:
        _fail("invalid options:\n" + _field_lines(errors), EXIT_USAGE)
    return built


def _check_id(achievement_id: str) -> None:
    error = _id_error(achievement_id)
    if error:
        _fail(f"{error[0]}: {error[1]}", EXIT_USAGE)


# ---------------------------------------------------------------------------- HTTP


def _base(gateway_url: str | None) -> str:
    # Resolved at call time, so ACHIEVEMENTS_* settings (env or .env) apply as elsewhere.
    return (gateway_url or Settings().gateway_url).rstrip("/")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: httpx.Response) -> Any:
    body = _json(response)
    if body is None:
        return response.text.strip() or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


def _refusal(
    base: str, response: httpx.Response, achievement_id: str | None, options: dict[str, str]
) -> NoReturn:
    status, detail = response.status_code, _detail(response)
    if status == 404:
        if achievement_id and isinstance(detail, str) and detail.startswith("no such"):
            _fail(f"no achievement {achievement_id}")
        # A 404 without the gateway's wording: the URL is probably not the gateway.
        _fail(f"{response.request.url.path} not found at {base} ({detail}); is it the gateway?")
    if status == 409:
        body = _json(response)
        field = body.get("field") if isinstance(body, dict) else None
        _fail(f"refused: {detail}" + (f" (field {field})" if field else ""))
    if status == 422 and isinstance(detail, list):
        errors = [
            (_option_name(str(e.get("field", "")).split("."), options), str(e.get("message")))
            for e in detail
            if isinstance(e, dict)
        ]
        _fail("the gateway refused the input:\n" + _field_lines(errors))
    _fail(f"the gateway answered {status}: {detail}")


def _call(
    gateway_url: str | None,
    method: str,
    path: str,
    *,
    achievement_id: str | None = None,
    body: BaseModel | None = None,
    raw: bytes | None = None,
    options: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request to the gateway; any failure becomes a worded `Failed`."""
    base = _base(gateway_url)
    content = raw if raw is not None else body.model_dump_json().encode() if body else None
    headers = {"Content-Type": "application/json"} if content is not None else {}
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT) as http:
            response = http.request(method, path, content=content, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        _fail(f"--gateway-url: {base!r} is not an http(s) URL ({exc})", EXIT_USAGE)
    except httpx.ConnectError:
        _fail(
            f"gateway not reachable at {base}; start the stack with `achievements dev`",
            EXIT_UNREACHABLE,
        )
    except httpx.TimeoutException:
        _fail(f"the gateway at {base} did not answer in time", EXIT_UNREACHABLE)
    except httpx.TransportError as exc:
        _fail(f"the gateway at {base} failed: {exc}", EXIT_UNREACHABLE)
    if response.status_code >= 300:
        _refusal(base, response, achievement_id, options or {})
    return response.status_code, response.json()


def _update(
    gateway_url: str | None,
    achievement_id: str,
    path: str,
    body: BaseModel,
    options: dict[str, str],
) -> Any:
    _, answer = _call(
        gateway_url,
        "POST",
        f"/achievements/{achievement_id}/{path}",
        achievement_id=achievement_id,
        body=body,
        options=options,
    )
    return answer["result"]


# ---------------------------------------------------------------------------- status rendering


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _relative(moment: datetime, now: datetime) -> str:
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if span >= size:
            amount = f"{span // size}{unit}"
            break
    else:
        amount = f"{span}s"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _facts(state: LifecycleState, now: datetime) -> Table:
    d = state.disclosure
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()

    def row(label: str, value: str) -> None:
        grid.add_row(label, Text(value))  # Text: user data is never read as markup

    row("title", d.title)
    row("institution", f"{d.institution.code} {d.institution.name} ({d.institution.kind.value})")
    row("field / TRL", f"{d.field.value} / {d.trl}")
    row("stage", f"{state.stage.value} since {_when(state.stage_since())}")
    if state.waiting is not None:
        until = state.waiting.until
        row(
            "waiting for",
            state.waiting.on
            + (f", until {_when(until)} ({_relative(until, now)})" if until else ""),
        )
    row("registration no.", state.registration_number or "not registered yet")
    row("modes", ", ".join(m.value for m in state.modes) or "none (scientific resource)")
    row("policy", state.policy.version)
    if state.reviewers or state.reviews:
        done = "; ".join(
            f"{r.reviewer_id} {r.mean:.2f} → {r.recommendation.value}" for r in state.reviews
        )
        panel = ", ".join(state.reviewers) or "open"
        row("reviews", f"{len(state.reviews)} (panel: {panel})" + (f": {done}" if done else ""))
    if state.evaluation is not None:
        e = state.evaluation
        mean = f", mean {e.mean_score:.2f}" if e.mean_score is not None else ""
        row("evaluation", f"{e.route.value}{mean} by {e.decided_by}")
    if state.poc is not None:
        p = state.poc
        verdict = "go" if p.go else "no-go"
        row("proof of concept", f"{verdict} ({p.application_number}): {p.reason}")
    if d.municipal_deadline is not None:
        if state.mandatory_listing_exempted:
            listing = "exempted"
        elif state.mandatory_listing_triggered:
            listing = "triggered: listed on the exchange"
        else:
            listing = f"due if not transformed by {d.municipal_deadline.isoformat()}"
        row("mandatory listing", listing)
    if state.contract is not None:
        c = state.contract
        tax = "eligible" if c.tax_preference_eligible else "not eligible"
        row(
            "contract",
            f"certificate {c.certificate_number}, verified {_money(c.verified_amount)}, "
            f"tax preference {tax}",
        )
    if state.company is not None:
        co = state.company
        row("company", f"{co.company_name} ({co.credit_code}), equity {co.equity_share}%")
    if state.incubator is not None:
        row("incubator", state.incubator.incubator)
    if state.incubation_exit is not None:
        row("exit", f"{state.incubation_exit.kind.value} {state.incubation_exit.detail}".strip())
    if state.report_number:
        row("report no.", state.report_number)
    if state.withdrawal is not None:
        w = state.withdrawal
        kind = "abandon" if w.abandon else "withdrawal"
        row(kind, f"by {w.requested_by}: {w.reason}")
    if state.outcome_reason:
        row("outcome", state.outcome_reason)
    return grid


def _listings(state: LifecycleState) -> Table:
    table = Table(title="listings", title_justify="left")
    for name in ("exchange", "listing", "status", "asking", "pricing", "publicity ends"):
        table.add_column(name, justify="right" if name == "asking" else "left")
    for x in state.listings:
        table.add_row(
            Text(x.exchange),
            Text(x.listing_id + (" (mandatory)" if x.mandatory else "")),
            Text(x.status.value),
            Text(_money(x.asking_price)),
            Text(x.pricing.value),
            Text(_when(x.publicity_ends_at)),
        )
    return table


def _deal(state: LifecycleState) -> Text:
    assert state.deal is not None
    deal = state.deal
    return Text(
        f"deal: {deal.buyer} buys by {deal.contract_type.value} contract for "
        f"{_money(deal.amount)} in {deal.instalments} instalment(s) on {deal.exchange} "
        f"({deal.listing_id}), closed {_when(deal.closed_at)}"
    )


def _payments(state: LifecycleState) -> Table:
    table = Table(title="payments and their distribution", title_justify="left")
    table.add_column("#")
    for name in ("amount", "costs", "net", "team reward", "TTO fund", "institution"):
        table.add_column(name, justify="right")
    table.add_column("received")
    totals = [Decimal("0")] * 6
    for rp in sorted(state.payments, key=lambda p: p.payment.instalment):
        p, dist = rp.payment, rp.distribution
        amounts = [
            p.amount,
            p.costs,
            dist.net_income,
            dist.team_reward,
            dist.tto_fund,
            dist.institution,
        ]
        totals = [t + a for t, a in zip(totals, amounts, strict=True)]
        table.add_row(str(p.instalment), *(_money(a) for a in amounts), _when(rp.received_at))
    if len(state.payments) > 1:
        table.add_row("total", *(_money(t) for t in totals), "", style="bold")
    return table


def _timeline(state: LifecycleState) -> Table:
    table = Table(title="timeline", title_justify="left")
    for name in ("entered", "stage", "note"):
        table.add_column(name)
    for entry in state.timeline:
        table.add_row(_when(entry.entered_at), entry.stage.value, Text(entry.note))
    return table


def render_status(state: LifecycleState, now: datetime | None = None) -> Group:
    """A readable summary of where an achievement stands."""
    now = now or datetime.now(UTC)
    colour = (
        "green" if state.stage is Stage.COMPLETED else "red" if state.stage.is_final else "cyan"
    )
    parts: list[Any] = [
        Panel(
            _facts(state, now),
            title=Text(f"{state.achievement_id}  [{state.stage.value}]", style=f"bold {colour}"),
            title_align="left",
            expand=False,
        )
    ]
    if state.listings:
        parts.append(_listings(state))
    if state.deal is not None:
        parts.append(_deal(state))
    if state.payments:
        parts.append(_payments(state))
    if state.timeline:
        parts.append(_timeline(state))
    return Group(*parts)


# ---------------------------------------------------------------------------- commands


def status(
    achievement_id: AchievementArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw state as JSON")] = False,
    gateway_url: GatewayUrl = None,
) -> None:
    """Where an achievement stands: stage, what it waits for, listings, deal, payments."""
    try:
        _check_id(achievement_id)
        _, body = _call(
            gateway_url, "GET", f"/achievements/{achievement_id}", achievement_id=achievement_id
        )
    except Failed as exc:
        _report(exc)
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    try:
        state = LifecycleState.model_validate(body)
    except ValidationError:
        # A gateway of another version: say so rather than print a traceback.
        _report(Failed("the gateway's answer does not match this CLI's model; try --json"))
    Console().print(render_status(state))


def review(
    achievement_id: AchievementArg,
    reviewer: Annotated[str, typer.Option(help="Reviewer id on the assigned panel")],
    novelty: Annotated[int, typer.Option(help="Score 1-5")],
    maturity: Annotated[int, typer.Option(help="Score 1-5")],
    market: Annotated[int, typer.Option(help="Score 1-5")],
    ip_strength: Annotated[int, typer.Option(help="Score 1-5")],
    recommendation: Annotated[str, typer.Option(help=f"One of: {ROUTES}")],
    comment: Annotated[str, typer.Option(help="Free text for the committee")] = "",
    gateway_url: GatewayUrl = None,
) -> None:
    """Submit an expert's scored review (the achievement must be in evaluation)."""
    options = {
        "reviewer_id": "--reviewer",
        "novelty": "--novelty",
        "maturity": "--maturity",
        "market": "--market",
        "ip_strength": "--ip-strength",
        "recommendation": "--recommendation",
        "comment": "--comment",
    }
    try:
        body = _build(
            Review,
            options,
            achievement_id,
            reviewer_id=reviewer,
            novelty=novelty,
            maturity=maturity,
            market=market,
            ip_strength=ip_strength,
            recommendation=recommendation,
            comment=comment,
        )
        count = _update(gateway_url, achievement_id, "reviews", body, options)
    except Failed as exc:
        _report(exc)
    typer.echo(f"review by {reviewer} recorded for {achievement_id} ({count} so far)")


def decide(
    achievement_id: AchievementArg,
    route: Annotated[str, typer.Option(help=f"One of: {ROUTES}")],
    by: By,
    reason: Annotated[str, typer.Option(help="Why (at least 3 characters)")],
    gateway_url: GatewayUrl = None,
) -> None:
    """Record an operator's routing decision (e.g. after a review escalation)."""
    options = {"route": "--route", "decided_by": "--by", "reason": "--reason"}
    try:
        body = _build(
            OperatorDecision, options, achievement_id, route=route, decided_by=by, reason=reason
        )
        routed = _update(gateway_url, achievement_id, "decision", body, options)
    except Failed as exc:
        _report(exc)
    typer.echo(f"{achievement_id} routed to {routed}")


def activate(
    achievement_id: AchievementArg,
    mode: Annotated[list[str], typer.Option(help=f"Repeatable; one of: {MODES}")],
    by: By,
    reason: Annotated[str, typer.Option(help="Why now")] = "",
    gateway_url: GatewayUrl = None,
) -> None:
    """Wake a dormant scientific resource with the modes it will be transformed by."""
    options = {"modes": "--mode", "activated_by": "--by", "reason": "--reason"}
    try:
        body = _build(
            Activation, options, achievement_id, modes=mode, activated_by=by, reason=reason
        )
        stage = _update(gateway_url, achievement_id, "activate", body, options)
    except Failed as exc:
        _report(exc)
    typer.echo(f"{achievement_id} activated: now in {stage}")


def withdraw(
    achievement_id: AchievementArg,
    reason: Annotated[str, typer.Option(help="Why (at least 3 characters)")],
    by: By,
    abandon: Annotated[
        bool, typer.Option("--abandon", help="Abandon (after evaluation) rather than withdraw")
    ] = False,
    gateway_url: GatewayUrl = None,
) -> None:
    """Withdraw or abandon the achievement; open listings are withdrawn from the exchanges."""
    options = {"reason": "--reason", "requested_by": "--by", "abandon": "--abandon"}
    try:
        body = _build(
            Withdrawal, options, achievement_id, reason=reason, requested_by=by, abandon=abandon
        )
        outcome = _update(gateway_url, achievement_id, "withdraw", body, options)
    except Failed as exc:
        _report(exc)
    typer.echo(f"{achievement_id}: {outcome}")


def exempt(
    achievement_id: AchievementArg,
    justification: Annotated[str, typer.Option(help="Why (at least 10 characters)")],
    by: By,
    gateway_url: GatewayUrl = None,
) -> None:
    """Exempt a municipally funded achievement from mandatory listing (item 8)."""
    options = {"justification": "--justification", "approved_by": "--by"}
    try:
        body = _build(
            MandatoryListingExemption,
            options,
            achievement_id,
            justification=justification,
            approved_by=by,
        )
        outcome = _update(gateway_url, achievement_id, "exemption", body, options)
    except Failed as exc:
        _report(exc)
    typer.echo(f"{achievement_id}: {outcome} from mandatory listing")


def disclose(
    file: Annotated[
        str, typer.Argument(metavar="FILE.json", help="A DisclosureRequest as JSON; - for stdin")
    ],
    gateway_url: GatewayUrl = None,
) -> None:
    """Disclose an achievement and start its lifecycle (see POST /achievements)."""
    # The gateway's request model lives with the app; imported here to keep other commands light.
    from gateway.app import DisclosureRequest

    try:
        text = _read(file)
        request = _parse_disclosure(DisclosureRequest, text, file)
        aid = request.disclosure.achievement_id
        # Send the bytes as written: the gateway refuses float money, which a re-dump would hide.
        status_code, started = _call(
            gateway_url, "POST", "/achievements", raw=text.encode(), options={"": file}
        )
    except Failed as exc:
        _report(exc)
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
        _fail(f"cannot read {file}: {exc}", EXIT_USAGE)


def _parse_disclosure(model: type[M], text: str, file: str) -> M:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = [
            (_option_name(e["loc"], {"": file}), e["msg"]) for e in exc.errors(include_input=False)
        ]
        _fail(f"{file} is not a valid disclosure request:\n" + _field_lines(errors), EXIT_USAGE)


def register(app: typer.Typer) -> None:
    """Add the people's commands to the `achievements` app."""
    for command in (status, disclose, review, decide, activate, withdraw, exempt):
        app.command()(command)
