"""`achievements demo`: synthetic achievements driven through all six stages, end to end.

The demo plays every party around an achievement through the entry points they would use:
the institution discloses and the experts review through the gateway, the buyer deals and
pays on the exchange sandbox (which sends signed webhooks), the incubator sends signed
webhooks. Every action carries a stable key, so the demo survives a restart of the stack
and never acts twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from cli import running_stack
from cli.demo_fund import record_fund_uses
from cli.demo_report import ReportNotWritten, write_annual_report
from cli.demo_stack import DemoStopped, ensure_stack
from cli.demo_stack import stop as stop_stack
from cli.samples import Scenario, scenario
from cli.stack import Ports
from core.settings import Settings
from gateway.signing import sign
from sandboxes.identity_provider import SyntheticSignIn
from schemas.exchange_api import SimulatedBid, SimulatedDeal, SimulatedPayment
from schemas.gateway_api import (
    ActivationRequest,
    GoNoGoRequest,
    ReviewRequest,
)
from schemas.incubation import ExitKind, IncubationMilestoneKind
from schemas.lifecycle import LifecycleState, Stage
from schemas.money import to_cents
from schemas.proof_of_concept import PocMilestoneReport
from schemas.webhooks import (
    CompanyFoundedWebhook,
    IncubationExitWebhook,
    IncubationMilestoneWebhook,
    IncubatorAdmittedWebhook,
    IncubatorEvent,
    IncubatorWebhook,
    PocFundWebhook,
)

console = Console()
STAGE_ORDER = [
    Stage.DISCLOSURE, Stage.RESOURCE, Stage.EVALUATION, Stage.PROOF_OF_CONCEPT,
    Stage.TRANSACTION, Stage.INCUBATION, Stage.REPORTING, Stage.COMPLETED,
    Stage.WITHDRAWN, Stage.ABANDONED,
]  # fmt: skip
UI_QUERY = "WorkflowType%3D%22AchievementLifecycle%22"
# Short codes keep the summary readable in an 80-column terminal; the caption explains them.
STAGE_CODES = {
    Stage.DISCLOSURE: "D", Stage.RESOURCE: "Rs", Stage.EVALUATION: "E",
    Stage.PROOF_OF_CONCEPT: "P", Stage.TRANSACTION: "T", Stage.INCUBATION: "I",
    Stage.REPORTING: "Rp", Stage.COMPLETED: "C", Stage.WITHDRAWN: "W", Stage.ABANDONED: "A",
}  # fmt: skip


@dataclass
class Tracked:
    scenario: Scenario
    state: LifecycleState | None = None
    visited: list[Stage] = field(default_factory=list)
    error: str | None = None

    @property
    def achievement_id(self) -> str:
        return self.scenario.disclosure.achievement_id

    @property
    def done(self) -> bool:
        return self.state is not None and self.state.stage.is_final


def officer(institution_code: str) -> str:
    """The synthetic technology-transfer officer of a demo institution."""
    return f"officer.{institution_code.lower()}"


POC_FUND_OFFICER = "officer.poc-fund"


class Parties:
    """The institution, experts, buyer, fund and incubator, each through its own entry point
    and, for people, with their own token."""

    def __init__(
        self, http: httpx.AsyncClient, settings: Settings, people: SyntheticSignIn
    ) -> None:
        self.http = http
        self.settings = settings
        self.people = people
        self.gateway = settings.gateway_url
        self.exchange = settings.exchange_url

    async def disclose(self, sc: Scenario) -> None:
        body = sc.disclosure_request()
        r = await self.http.post(
            f"{self.gateway}/achievements",
            content=body.model_dump_json(),
            headers={
                "Content-Type": "application/json",
                **await self.people.headers(officer(sc.disclosure.institution.code)),
            },
        )
        _expect(r, 200, 201)

    async def state(self, sc: Scenario) -> LifecycleState | None:
        r = await self.http.get(
            f"{self.gateway}/achievements/{sc.disclosure.achievement_id}",
            headers=await self.people.headers(officer(sc.disclosure.institution.code)),
        )
        if r.status_code == 404:
            return None
        _expect(r, 200)
        return LifecycleState.model_validate(r.json())

    async def command(self, achievement_id: str, path: str, body: BaseModel, as_user: str) -> None:
        # 409: the workflow has already moved on (e.g. a review resent after a restart).
        r = await self.http.post(
            f"{self.gateway}/achievements/{achievement_id}/{path}",
            content=body.model_dump_json(),
            headers={"Content-Type": "application/json", **await self.people.headers(as_user)},
        )
        _expect(r, 200, 409)

    async def exchange_trigger(
        self, exchange: str, listing_id: str, what: str, key: str, body: BaseModel
    ) -> None:
        """The buyer acts on the exchange (its test-mode endpoints), which sends the webhooks."""
        r = await self.http.post(
            f"{self.exchange}/sandbox/exchanges/{exchange}/listings/{listing_id}/{what}",
            content=body.model_dump_json(),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        _expect(r, 200, 201)

    async def incubator(self, body: IncubatorWebhook) -> None:
        raw = body.model_dump_json().encode()
        secret = self.settings.webhook_secret("incubator").get_secret_value()
        headers = {"Content-Type": "application/json", **sign(secret, raw)}
        r = await self.http.post(f"{self.gateway}/webhooks/incubator", content=raw, headers=headers)
        _expect(r, 200, 202)

    async def poc_fund(self, body: PocFundWebhook) -> None:
        raw = body.model_dump_json().encode()
        secret = self.settings.webhook_secret("poc-fund").get_secret_value()
        headers = {"Content-Type": "application/json", **sign(secret, raw)}
        r = await self.http.post(f"{self.gateway}/webhooks/poc-fund", content=raw, headers=headers)
        _expect(r, 200, 202, 409)  # 409: the proof of concept is already over


def _expect(response: httpx.Response, *ok: int) -> None:
    if response.status_code not in ok:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text[:300]}"
        )


async def act(parties: Parties, t: Tracked, state: LifecycleState) -> None:
    """One step of whatever the achievement waits for; safe to repeat."""
    sc, aid = t.scenario, t.achievement_id
    now = datetime.now(UTC)
    if state.stage is Stage.RESOURCE and sc.activate_with:
        await parties.command(
            aid,
            "activate",
            ActivationRequest(modes=sc.activate_with, reason="a licensee came forward"),
            officer(sc.disclosure.institution.code),
        )
    elif state.stage is Stage.EVALUATION and state.evaluator is not None:
        pass  # the registry sandbox's evaluation institution reports on its own (item 6)
    elif state.stage is Stage.EVALUATION and state.search is not None:
        reviewed = {r.reviewer_id for r in state.reviews}
        for review in sc.reviews():
            if review.reviewer_id not in reviewed:
                # Each expert reviews as themselves: the gateway takes the id from the token.
                body = ReviewRequest.model_validate(
                    review.model_dump(exclude={"reviewer_id", "actor"})
                )
                await parties.command(aid, "reviews", body, review.reviewer_id)
    elif state.stage is Stage.PROOF_OF_CONCEPT and state.waiting is not None:
        # The fund reports the first milestone (recorded as a poc_milestone event at once; a
        # repeat is the same event id, so nothing twice), then its officer takes the gate.
        await parties.poc_fund(
            PocFundWebhook(
                type="milestone_reported",
                achievement_id=aid,
                report=PocMilestoneReport(
                    event_id=f"demo-{aid}-m1", milestone_id="m1", achieved=True, reported_at=now
                ),
            )
        )
        await parties.command(
            aid,
            "poc/decision",
            GoNoGoRequest(
                technical_feasible=True,
                market_feasible=True,
                reason="prototype met its targets",
            ),
            POC_FUND_OFFICER,
        )
    elif state.stage is Stage.TRANSACTION and state.listings and state.deal is None:
        if len(state.listings) < len(sc.exchanges):
            return  # not listed everywhere yet
        if now < max(x.publicity_ends_at for x in state.listings):
            return  # the publicity period must pass first
        listing = state.listings[-1]  # deal on the last exchange: the others are withdrawn
        key = f"demo-{aid}"
        await parties.exchange_trigger(
            listing.exchange,
            listing.listing_id,
            "bids",
            f"{key}-bid",
            SimulatedBid(bidder="Synthetic Buyer Ltd (demo)", amount=sc.deal_amount),
        )
        await parties.exchange_trigger(
            listing.exchange,
            listing.listing_id,
            "deal",
            f"{key}-deal",
            SimulatedDeal(
                buyer="Synthetic Buyer Ltd (demo)",
                contract_type=sc.contract_type,
                amount=sc.deal_amount,
                instalments=sc.instalments,
                brokerage=sc.brokerage,
            ),
        )
    elif state.stage is Stage.TRANSACTION and state.deal is not None and state.contract:
        deal = state.deal
        paid = {p.payment.instalment for p in state.payments}
        for n, amount in enumerate(_instalments(deal.amount, deal.instalments), start=1):
            if n not in paid:
                await parties.exchange_trigger(
                    deal.exchange,
                    deal.listing_id,
                    "payments",
                    f"demo-{aid}-pay-{n}",
                    SimulatedPayment(instalment=n, amount=amount, costs=to_cents(amount / 100)),
                )
    elif state.stage is Stage.INCUBATION:
        await _incubate(parties, aid, state, now)


async def _incubate(parties: Parties, aid: str, state: LifecycleState, now: datetime) -> None:
    """The incubator's signed webhooks, one step at a time, built from the gateway's models."""
    event: IncubatorEvent | None = None
    if state.company is None:
        event = CompanyFoundedWebhook(
            type="company_founded",
            achievement_id=aid,
            event_id=f"{aid}-co",
            company_name=f"{aid} Technologies Co (synthetic)",
            credit_code="91310000MA1FL8XQ3X",
            equity_share=Decimal("25.00"),
            valuation=Decimal("10000000.00"),
            founded_at=now,
        )
    elif state.equity is not None and state.incubator is None:
        event = IncubatorAdmittedWebhook(
            type="incubator_admitted",
            achievement_id=aid,
            event_id=f"{aid}-inc",
            incubator="Synthetic Science Park (demo)",
            admitted_at=now,
        )
    elif state.incubator is not None and not state.incubation_milestones:
        event = IncubationMilestoneWebhook(
            type="incubation_milestone",
            achievement_id=aid,
            event_id=f"{aid}-a",
            kind=IncubationMilestoneKind.FINANCING_ROUND,
            description="Series A",
            amount=Decimal("20000000.00"),
            reached_at=now,
        )
    elif state.incubation_milestones and state.incubation_exit is None:
        event = IncubationExitWebhook(
            type="incubation_exit",
            achievement_id=aid,
            event_id=f"{aid}-exit",
            kind=ExitKind.GRADUATED,
            detail="left the park",
            exited_at=now,
        )
    if event is not None:
        await parties.incubator(IncubatorWebhook(event))


def _instalments(total: Decimal, n: int) -> list[Decimal]:
    part = to_cents(total / n)
    return [part] * (n - 1) + [total - part * (n - 1)]


async def drive(parties: Parties, t: Tracked, deadline: float) -> None:
    await _retrying(lambda: parties.disclose(t.scenario), deadline)
    while not t.done and time.monotonic() < deadline:
        try:
            state = await parties.state(t.scenario)
            if state is not None:
                t.state = state
                if not t.visited or t.visited[-1] is not state.stage:
                    t.visited.append(state.stage)
                await act(parties, t, state)
            t.error = None
        except (httpx.HTTPError, RuntimeError) as err:
            # The stack may be restarting: keep trying until the deadline.
            t.error = str(err)[:200]
        await asyncio.sleep(0.5)


async def _retrying(call: Any, deadline: float) -> None:
    while True:
        try:
            await call()
            return
        except (httpx.HTTPError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def progress_table(tracked: list[Tracked]) -> Table:
    counts = Counter(t.state.stage if t.state else Stage.DISCLOSURE for t in tracked)
    table = Table(title="Synthetic achievements by stage (demo data)", expand=False)
    for stage in STAGE_ORDER:
        table.add_column(stage.value.replace("_", " "), justify="right")
    table.add_row(*[str(counts.get(s, 0)) for s in STAGE_ORDER])
    return table


def summary_table(tracked: list[Tracked]) -> Table:
    legend = ", ".join(
        f"{code} {stage.value.replace('_', ' ')}" for stage, code in STAGE_CODES.items()
    )
    table = Table(title="Demo summary: stages passed and outcome", caption=legend)
    for col in ("final stage", "route", "path", "count", "received (CNY)", "team reward (CNY)"):
        table.add_column(col, justify="right" if col in {"count"} or "CNY" in col else "left")
    groups: dict[tuple[str, str, str], list[Tracked]] = {}
    for t in tracked:
        st = t.state
        key = (
            st.stage.value if st else "unknown",
            st.evaluation.route.value if st and st.evaluation else "-",
            "→".join(STAGE_CODES[e.stage] for e in st.timeline) if st else "-",
        )
        groups.setdefault(key, []).append(t)
    for (final, route, path), members in sorted(groups.items()):
        received = sum(
            (p.payment.amount for t in members if t.state for p in t.state.payments),
            Decimal("0.00"),
        )
        reward = sum(
            (p.distribution.team_reward for t in members if t.state for p in t.state.payments),
            Decimal("0.00"),
        )
        table.add_row(final, route, path, str(len(members)), f"{received:,.2f}", f"{reward:,.2f}")
    return table


# Plan item 6: every fourth achievement (from the third) is evaluated by an evaluation
# institution, which the registry sandbox plays (it reports a few seconds after the request).
DEMO_EVALUATOR = "SYN-EVAL-SHAC"


def _evaluator_for(sc: Scenario, index: int) -> Scenario:
    if index % 4 != 2:
        return sc
    return dataclasses.replace(sc, evaluated_by=DEMO_EVALUATOR, reviewers=[])


async def run_demo(
    settings: Settings, ports: Ports, count: int, exit_when_done: bool, within_seconds: float
) -> int:
    """The demo; Ctrl-C stops it, and the stack it started, with one line."""
    main = asyncio.current_task()
    assert main is not None
    # Our own handler: asyncio.run's would turn Ctrl-C into a KeyboardInterrupt traceback.
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, main.cancel)
    started: subprocess.Popen[bytes] | None = None
    try:
        async with httpx.AsyncClient(timeout=30.0) as http:
            started = await ensure_stack(http, settings, ports)
            code = await _play(http, settings, ports, count, within_seconds)
        if started is not None and not exit_when_done:
            console.print("The stack keeps running. Press Ctrl-C to stop it.")
            await asyncio.to_thread(started.wait)
        return code
    except DemoStopped as err:
        console.print(f"[red]✗ {err}[/]", soft_wrap=True)
        return 2
    except (httpx.HTTPError, RuntimeError) as err:
        console.print(f"[red]✗ the demo stopped: {err}[/]", soft_wrap=True)
        return 1
    except asyncio.CancelledError:
        if started is None:
            console.print("Interrupted; the stack keeps running (`achievements stop` stops it).")
            return 130
        stop_stack(started)
        started = None
        console.print("Interrupted: stopped the stack the demo started; nothing is left running.")
        return 130
    finally:
        if started is not None:
            stop_stack(started)


async def _play(
    http: httpx.AsyncClient, settings: Settings, ports: Ports, count: int, within_seconds: float
) -> int:
    run_tag = os.environ.get("ACHIEVEMENTS_DEMO_TAG") or datetime.now(UTC).strftime("%y%m%d%H%M%S")
    today = datetime.now(UTC).date()
    tracked = [Tracked(_evaluator_for(scenario(i, run_tag, today), i)) for i in range(count)]
    # The stack's own test-mode issuer (not a login's of another day: the demo signs its
    # synthetic people in where this stack verifies them).
    stack = running_stack.running(settings.data_dir)
    issuer = stack.issuer_url if stack else f"http://127.0.0.1:{ports.issuer}"
    parties = Parties(http, settings, SyntheticSignIn(http, issuer))
    deadline = time.monotonic() + within_seconds
    console.print(
        f"Demo run [bold]{run_tag}[/]: {count} synthetic achievements "
        "(institutions SYN-*, accelerated demo policy)."
    )
    drivers = asyncio.gather(*(drive(parties, t, deadline) for t in tracked))
    try:
        with Live(progress_table(tracked), console=console, refresh_per_second=2) as live:
            while not drivers.done():
                live.update(Group(progress_table(tracked)))
                await asyncio.sleep(0.5)
            live.update(progress_table(tracked))
        await drivers
        await record_fund_uses(
            parties, [t.scenario.disclosure.institution.code for t in tracked], run_tag
        )
    finally:
        drivers.cancel()
    pdf_skipped: str | None = None
    try:
        report_files, pdf_skipped = await write_annual_report(
            http, settings, parties.people, today.year
        )
        report_error = None
    except (ReportNotWritten, httpx.HTTPError) as exc:
        report_files, report_error = [], str(exc) or type(exc).__name__
    ui = settings_ui(settings)
    console.print(summary_table(tracked))
    unfinished = [t for t in tracked if not t.done]
    for t in unfinished[:5]:
        st = t.state
        console.print(
            f"[yellow]{t.achievement_id} did not finish: "
            f"{st.stage.value if st else 'not disclosed'} {t.error or ''}[/]"
        )
    console.print(
        f"Look at them in the Temporal UI: {ui}/namespaces/default/workflows?query={UI_QUERY}"
    )
    completed = sum(1 for t in tracked if t.state and t.state.stage is Stage.COMPLETED)
    console.print(f"{completed} of {count} achievements completed all their stages.")
    for path in report_files:
        console.print(f"The annual report (in Chinese): {path.as_uri()}")
    if pdf_skipped:
        console.print(f"[yellow]The annual report's PDF was not printed here: {pdf_skipped}[/]")
    if report_error:
        console.print(f"[red]The annual report was not written: {report_error}[/]")
    return 0 if not unfinished and not report_error else 1


def settings_ui(settings: Settings) -> str:
    path = settings.data_dir / "stack.json"
    if path.exists():
        return str(json.loads(path.read_text())["ui_url"])
    return "http://localhost:8233"
