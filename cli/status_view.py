"""How `achievements status` shows an achievement: facts, listings, deal, payments, timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas.gateway_api import AchievementBrief, ArchivedAchievement
from schemas.lifecycle import LifecycleState, Stage
from schemas.refusals import held_event_type


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


def _refused(state: LifecycleState) -> Table:
    """The external events the lifecycle did not apply, newest last, with why."""
    table = Table(title="refused events", title_justify="left")
    for name in ("refused", "source", "type", "event id", "reason"):
        table.add_column(name)
    for r in state.refused:
        table.add_row(
            _when(r.refused_at), Text(r.source), Text(r.type), Text(r.event_id), Text(r.reason)
        )
    return table


def _held(state: LifecycleState) -> Table:
    """Incubator events that came before the company: applied once it is founded."""
    table = Table(title="held incubator events", title_justify="left")
    for name in ("type", "event id"):
        table.add_column(name)
    for event in state.held_incubator_events:
        table.add_row(Text(held_event_type(event)), Text(event.event_id))
    return table


def _timeline(state: LifecycleState) -> Table:
    table = Table(title="timeline", title_justify="left")
    for name in ("entered", "stage", "note"):
        table.add_column(name)
    for entry in state.timeline:
        table.add_row(_when(entry.entered_at), entry.stage.value, Text(entry.note))
    return table


def _with_link(grid: Table, ui_url: str | None) -> Table:
    if ui_url:
        grid.add_row("Temporal UI", Text(ui_url, style=f"link {ui_url}"))
    return grid


def render_status(
    state: LifecycleState, now: datetime | None = None, ui_url: str | None = None
) -> Group:
    """A readable summary of where an achievement stands, and where its workflow is."""
    now = now or datetime.now(UTC)
    colour = (
        "green" if state.stage is Stage.COMPLETED else "red" if state.stage.is_final else "cyan"
    )
    parts: list[Any] = [
        Panel(
            _with_link(_facts(state, now), ui_url),
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
    if state.held_incubator_events:
        parts.append(_held(state))
    if state.refused:
        parts.append(_refused(state))
    if state.timeline:
        parts.append(_timeline(state))
    return Group(*parts)


def render_brief(brief: AchievementBrief) -> Panel:
    """What an assigned expert or the proof-of-concept fund sees."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Title", brief.title)
    grid.add_row("Institution", brief.institution_code)
    grid.add_row("Field / TRL", f"{brief.field} / {brief.trl}")
    grid.add_row("Stage", brief.stage)
    if brief.waiting is not None:
        grid.add_row(
            "Waiting for",
            brief.waiting.on
            + (f" (by {_when(brief.waiting.until)})" if brief.waiting.until else ""),
        )
    if brief.summary is not None:
        grid.add_row("Summary", brief.summary)
    if brief.my_review is not None:
        r = brief.my_review
        grid.add_row(
            "Your review",
            f"novelty {r.novelty}, maturity {r.maturity}, market {r.market}, "
            f"IP {r.ip_strength}: {r.recommendation.value}",
        )
    return Panel(grid, title=brief.achievement_id)


def render_archive(record: ArchivedAchievement) -> Group:
    """A closed lifecycle whose workflow retention deleted: its last row and recorded events."""
    view = record.achievement
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("title", Text(view.title))
    grid.add_row("institution", Text(view.institution_code))
    grid.add_row("field", Text(view.field))
    grid.add_row("stage", f"{view.stage} (closed; last change {_when(view.updated_at)})")
    grid.add_row("modes", Text(", ".join(view.modes) or "none"))
    grid.add_row("source", "the archive in PostgreSQL: the workflow is past its retention")
    events = Table(title="recorded events", title_justify="left")
    for name in ("occurred", "stage", "event", "by"):
        events.add_column(name)
    for e in record.timeline:
        actor = e.actor.subject if e.actor is not None else e.source
        events.add_row(_when(e.occurred_at), Text(e.stage), e.type.value, Text(actor))
    title = Text(f"{record.achievement_id}  [{view.stage}, closed]", style="bold")
    return Group(Panel(grid, title=title, title_align="left", expand=False), events)
