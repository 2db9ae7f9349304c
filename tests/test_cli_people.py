"""`achievements status|review|decide|activate|withdraw|exempt|disclose` against the real gateway.

The CLI runs through typer's CliRunner in a thread (it is synchronous HTTP) while the session's
gateway, sandboxes and a real worker on the stack's task queue run in the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
from gateway_requests import disclosure_request as _request
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from cli.main import app
from sandboxes.identity_directory import DEMO_PASSWORD
from workers.worker import build_worker

if TYPE_CHECKING:
    from conftest import Stack


OFFICER, APPROVER = "officer.syn-uni", "approver.syn-uni"


@dataclass
class People:
    stack: Stack
    http: httpx.AsyncClient
    credentials: Path
    logged_in: set[str] = field(default_factory=set)

    async def cli(
        self,
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        as_user: str = OFFICER,
    ) -> Result:
        """Run `achievements ARGS` as a logged-in person against the stack's gateway (unless
        env sets another). Each person has their own credentials file, as on their own machine."""
        if as_user not in self.logged_in:
            result = await self._invoke(
                ["login", "--username", as_user, "--password-stdin"],
                DEMO_PASSWORD + "\n",
                as_user,
                {},
            )
            assert result.exit_code == 0, result.output
            assert f"logged in at {self.stack.settings.oidc_issuer} as {as_user}" in result.stdout
            self.logged_in.add(as_user)
        argv = list(args) if env else [*args, "--gateway-url", self.stack.gateway_url]
        return await self._invoke(argv, stdin, as_user, env or {})

    async def _invoke(
        self, argv: list[str], stdin: str | None, as_user: str, env: dict[str, str]
    ) -> Result:
        full_env = {
            # Wide terminal: rich must not wrap ids and amounts the tests look for.
            "COLUMNS": "200",
            "ACHIEVEMENTS_OIDC_ISSUER": str(self.stack.settings.oidc_issuer),
            "ACHIEVEMENTS_CREDENTIALS_FILE": str(self.credentials / f"{as_user}.json"),
            **env,
        }

        def invoke() -> Result:
            return CliRunner().invoke(app, argv, input=stdin, env=full_env, catch_exceptions=False)

        return await asyncio.to_thread(invoke)

    async def state(self, achievement_id: str) -> dict[str, Any]:
        response = await self.http.get(
            f"/achievements/{achievement_id}", headers=await self.stack.headers(OFFICER)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(
        self, achievement_id: str, check: Callable[[dict[str, Any]], bool], within: float = 20.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            current = await self.state(achievement_id)
            if check(current):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"{achievement_id} stuck in {current['stage']}")
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def people(
    dev_env: WorkflowEnvironment, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[People]:
    """The stack's gateway, and a real worker on the task queue it starts lifecycles on."""
    settings = stack.settings
    async with (
        build_worker(dev_env.client, stack.deps, settings.task_queue, settings),
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as http,
    ):
        yield People(stack=stack, http=http, credentials=tmp_path_factory.mktemp("credentials"))


def request(achievement_id: str, **disclosure: Any) -> dict[str, Any]:
    return _request(achievement_id, field="new_energy", **disclosure)


def new_id() -> str:
    return f"CLI-{uuid.uuid4().hex[:10].upper()}"


def write(tmp_path: Path, body: dict[str, Any] | str) -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    return str(path)


async def disclosed(
    people: People, tmp_path: Path, stage: str = "evaluation", **disclosure: Any
) -> str:
    aid = new_id()
    result = await people.cli("disclose", write(tmp_path, request(aid, **disclosure)))
    assert result.exit_code == 0, result.output
    await people.until(aid, lambda s: s["stage"] == stage)
    return aid


async def test_disclose_then_status_and_a_duplicate_from_stdin(
    people: People, tmp_path: Path
) -> None:
    aid = new_id()
    body = request(aid)
    first = await people.cli("disclose", write(tmp_path, body))
    assert first.exit_code == 0, first.output
    assert f"{aid} disclosed: workflow achievement-{aid}" in first.stdout
    assert "policy demo-accelerated.1" in first.stdout

    # Wait for everything read below: registration and the review deadline are set by the
    # workflow after it enters evaluation, not at the same moment.
    state = await people.until(
        aid,
        lambda s: (
            s["stage"] == "evaluation"
            and bool(s["registration_number"])
            and s.get("waiting") is not None
        ),
    )
    shown = await people.cli("status", aid)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert f"{aid}  [evaluation]" in out
    assert state["registration_number"] in out
    assert "Synthetic University" in out
    assert state["waiting"]["on"] in out and "until" in out  # the review SLA deadline
    assert "0 (panel: expert-a, expert-b, expert-c)" in out
    assert "timeline" in out and "disclosure" in out

    again = await people.cli("disclose", "-", stdin=json.dumps(body))
    assert again.exit_code == 0, again.output
    assert "already disclosed with this content: nothing new started" in again.stdout

    raw = await people.cli("status", aid, "--json")
    assert json.loads(raw.stdout)["achievement_id"] == aid


async def test_bad_disclosures_are_named_and_start_nothing(people: People, tmp_path: Path) -> None:
    aid = new_id()
    bad = request(aid, trl=12, inventors=[{"name": "Li", "share": "50"}])
    result = await people.cli("disclose", write(tmp_path, bad))
    assert result.exit_code == 2
    assert "disclosure.trl:" in result.stderr
    assert "disclosure.inventors:" in result.stderr
    assert "confidential summary" not in result.output  # input values are never echoed
    missing = await people.cli("status", aid)
    assert missing.exit_code == 1
    assert f"no achievement {aid}" in missing.stderr

    # Float money is refused by the gateway's own model, before anything is sent.
    floaty = request(aid)
    floaty["asking_price"] = 500000.1
    refused = await people.cli("disclose", write(tmp_path, floaty))
    assert refused.exit_code == 2
    assert "asking_price: send decimals as strings" in refused.stderr

    broken = await people.cli("disclose", write(tmp_path, "{not json"))
    assert broken.exit_code == 2 and "is not a valid disclosure request" in broken.stderr
    absent = await people.cli("disclose", str(tmp_path / "nope.json"))
    assert absent.exit_code == 2 and "cannot read" in absent.stderr


async def test_same_id_with_other_content_is_the_gateways_409(
    people: People, tmp_path: Path
) -> None:
    aid = await disclosed(people, tmp_path)
    changed = request(aid, title="Another invention entirely")
    result = await people.cli("disclose", write(tmp_path, changed))
    assert result.exit_code == 1
    assert "already disclosed with different content" in result.stderr
    assert "field disclosure.achievement_id" in result.stderr


async def test_review_decide_and_a_paid_deal_in_status(people: People, tmp_path: Path) -> None:
    aid = await disclosed(people, tmp_path)
    scores = ["--novelty", "4", "--maturity", "4", "--market", "4", "--ip-strength", "4"]

    bad = await people.cli(
        "review", aid, *scores[:-1], "9", "--recommendation", "maybe", as_user="expert-a"
    )
    assert bad.exit_code == 2
    assert "--ip-strength: Input should be less than or equal to 5" in bad.stderr
    assert "--recommendation:" in bad.stderr
    # An expert who is not on the panel cannot even see the achievement.
    intruder = await people.cli(
        "review", aid, *scores, "--recommendation", "transaction", as_user="expert-x"
    )
    assert intruder.exit_code == 1
    assert f"no achievement {aid} (or not one you may see)" in intruder.stderr
    # An officer is not an expert: the gateway names the role.
    officer = await people.cli("review", aid, *scores, "--recommendation", "transaction")
    assert officer.exit_code == 1
    assert "not allowed: POST /achievements/{achievement_id}/reviews requires the role expert" in (
        officer.stderr
    )
    ok = await people.cli(
        "review", aid, *scores, "--recommendation", "transaction", as_user="expert-a"
    )
    assert ok.exit_code == 0, ok.output
    # 1, not 2: the refused attempts above never reached the workflow.
    assert "(1 so far)" in ok.stdout

    decided = await people.cli("decide", aid, "--route", "transaction", "--reason", "ready")
    assert decided.exit_code == 0, decided.output
    assert f"{aid} routed to transaction" in decided.stdout
    twice = await people.cli("decide", aid, "--route", "resource", "--reason", "changed mind")
    # Refused either way: the decision is recorded, or the workflow has already acted on it.
    assert twice.exit_code == 1 and "refused: stage: " in twice.stderr

    # The buyer deals and pays on the exchange sandbox, which sends signed webhooks.
    state = await people.until(aid, lambda s: bool(s["listings"]), within=30)
    listing = state["listings"][0]
    await asyncio.sleep(3.2)  # the demo policy's publicity period
    base = f"/sandbox/exchanges/{listing['exchange']}/listings/{listing['listing_id']}"
    async with httpx.AsyncClient(base_url=people.stack.settings.exchange_url) as exchange:
        deal = {
            "buyer": "Acme Batteries",
            "contract_type": "transfer",
            "amount": "600000.00",
            "instalments": 2,
        }
        response = await exchange.post(
            base + "/deal", json=deal, headers={"Idempotency-Key": f"{aid}-deal"}
        )
        assert response.status_code == 202, response.text
        await people.until(aid, lambda s: s["contract"] is not None, within=30)
        payment = {"instalment": 1, "amount": "300000.00", "costs": "3000.00"}
        response = await exchange.post(
            base + "/payments", json=payment, headers={"Idempotency-Key": f"{aid}-pay-1"}
        )
        assert response.status_code == 202, response.text
    state = await people.until(aid, lambda s: len(s["payments"]) == 1, within=30)

    shown = await people.cli("status", aid)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert listing["listing_id"] in out and "dealt" in out
    assert "deal: Acme Batteries buys by transfer contract for 600,000.00 in 2" in out
    assert state["contract"]["certificate_number"] in out
    # Net 297,000.00 split by the policy: 70% team, 10% TTO fund, the rest to the institution.
    for amount in ("300,000.00", "3,000.00", "297,000.00", "207,900.00", "29,700.00", "59,400.00"):
        assert amount in out


async def test_activate_a_dormant_resource(people: People, tmp_path: Path) -> None:
    aid = await disclosed(people, tmp_path, stage="resource", intended_modes=[])
    bad = await people.cli("activate", aid, "--mode", "licence", "--mode", "rental")
    assert bad.exit_code == 2
    assert "--mode #2: Input should be" in bad.stderr
    assert (await people.state(aid))["stage"] == "resource"

    ok = await people.cli(
        "activate", aid, "--mode", "licence", "--mode", "transfer", "--reason", "x"
    )
    assert ok.exit_code == 0, ok.output
    assert f"{aid} activated: now in evaluation" in ok.stdout
    state = await people.state(aid)
    assert state["modes"] == ["licence", "transfer"]
    again = await people.cli("activate", aid, "--mode", "licence")
    assert again.exit_code == 1
    assert "refused: stage: only a resource can be activated, not evaluation" in again.stderr


async def test_exempt_and_withdraw(people: People, tmp_path: Path) -> None:
    municipal = [
        {
            "kind": "municipal_finance",
            "project_code": "SH-1",
            "transformation_deadline": "2030-01-01",
        }
    ]
    aid = await disclosed(people, tmp_path, funding=municipal)
    short = await people.cli("exempt", aid, "--justification", "because", as_user=APPROVER)
    assert short.exit_code == 2 and "--justification:" in short.stderr
    why = "strategic defence project, listing deferred by the committee"
    ok = await people.cli("exempt", aid, "--justification", why, as_user=APPROVER)
    assert ok.exit_code == 0, ok.output
    assert f"{aid}: exempted from mandatory listing" in ok.stdout
    shown = await people.cli("status", aid)
    assert any(
        "mandatory listing" in line and "exempted" in line for line in shown.stdout.splitlines()
    )
    twice = await people.cli("exempt", aid, "--justification", why, as_user=APPROVER)
    assert twice.exit_code == 1 and "refused: stage: already exempted" in twice.stderr

    self_funded = await disclosed(people, tmp_path)
    refused = await people.cli("exempt", self_funded, "--justification", why, as_user=APPROVER)
    assert refused.exit_code == 1
    assert "funding: no municipal finance" in refused.stderr

    too_short = await people.cli("withdraw", aid, "--reason", "no")
    assert too_short.exit_code == 2 and "--reason:" in too_short.stderr
    withdrawn = await people.cli("withdraw", aid, "--reason", "the team left")
    assert withdrawn.exit_code == 0, withdrawn.output
    assert f"{aid}: withdrawing" in withdrawn.stdout
    await people.until(aid, lambda s: s["stage"] == "withdrawn")
    late = await people.cli("withdraw", aid, "--reason", "again", "--abandon")
    assert late.exit_code == 1 and "refused:" in late.stderr
    shown = await people.cli("status", aid)
    assert "withdrawal" in shown.stdout and "the team left" in shown.stdout


async def test_unknown_achievement_and_unreachable_gateway(people: People) -> None:
    aid = new_id()
    for args in (
        ("status", aid),
        ("withdraw", aid, "--reason", "not pursued"),
        ("decide", aid, "--route", "abandon", "--reason", "stale"),
    ):
        result = await people.cli(*args)
        assert result.exit_code == 1, result.output
        assert f"error: no achievement {aid}" in result.stderr

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    # From the environment, as `achievements dev` users configure it.
    result = await people.cli("status", aid, env={"ACHIEVEMENTS_GATEWAY_URL": closed})
    assert result.exit_code == 3
    assert (
        f"gateway not reachable at {closed}; start the stack with `achievements dev`"
        in result.stderr
    )


async def test_login_whoami_and_sessions(people: People, tmp_path: Path) -> None:
    settings = people.stack.settings
    env = {
        "ACHIEVEMENTS_OIDC_ISSUER": str(settings.oidc_issuer),
        "ACHIEVEMENTS_CREDENTIALS_FILE": str(tmp_path / "fresh.json"),
        "ACHIEVEMENTS_GATEWAY_URL": people.stack.gateway_url,
    }

    def run(*argv: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(app, list(argv), input=stdin, env=env, catch_exceptions=False)

    nobody = await asyncio.to_thread(run, "whoami")
    assert nobody.exit_code == 2
    assert f"not logged in at {settings.oidc_issuer}: run `achievements login`" in nobody.stderr
    wrong = await asyncio.to_thread(
        run, "login", "--username", "expert-a", "--password-stdin", stdin="guess\n"
    )
    assert wrong.exit_code == 2 and "the identity provider refused" in wrong.stderr
    assert "guess" not in wrong.output
    ok = await asyncio.to_thread(
        run, "login", "--username", "expert-a", "--password-stdin", stdin=DEMO_PASSWORD + "\n"
    )
    assert ok.exit_code == 0, ok.output
    cache = tmp_path / "fresh.json"
    assert cache.stat().st_mode & 0o777 == 0o600  # tokens are private to their owner
    me = await asyncio.to_thread(run, "whoami")
    assert me.exit_code == 0, me.output
    assert "expert-a" in me.stdout and "roles: expert" in me.stdout
    assert "POST /achievements/{achievement_id}/reviews: assigned panel" in me.stdout
    # An expert's list is their panels only, and the event feed is not theirs to read.
    feed = await asyncio.to_thread(run, "events")
    assert feed.exit_code == 1 and "403" in feed.stderr
    out = await asyncio.to_thread(run, "logout")
    assert out.exit_code == 0 and "logged out" in out.stdout
    assert (await asyncio.to_thread(run, "whoami")).exit_code == 2


async def test_fund_use_and_show(people: People, dev_env: WorkflowEnvironment) -> None:
    """`fund use` as the officer with the approver's token, then `fund show`."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from schemas.fund import FundAccrual, FundState
    from workflows.ids import fund_workflow_id
    from workflows.transfer_fund import TransferFund

    rid = new_id()
    seed = FundAccrual(
        institution="SYN-UNI",
        achievement_id=rid,
        payment_event_id="pay-1",
        amount=Decimal("10.00"),
        paid_at=datetime.now(UTC),
        actor="lifecycle:test",
    )
    # What a lifecycle's accrual does: signal-with-start the institution's fund.
    await dev_env.client.start_workflow(
        TransferFund.run,
        FundState(institution="SYN-UNI", jurisdiction="CN-SH"),
        id=fund_workflow_id("SYN-UNI"),
        task_queue=people.stack.settings.task_queue,
        start_signal="accrue",
        start_signal_args=[seed],
    )
    approval = (await people.stack.headers(APPROVER))["Authorization"].removeprefix("Bearer ")
    env = {"ACHIEVEMENTS_APPROVER_TOKEN": approval}
    gateway = ("--gateway-url", people.stack.gateway_url)
    use = ("fund", "use", "SYN-UNI", "--purpose", "cli purpose", "--request-id", rid, *gateway)
    result = await people.cli(*use, "--amount", "1.50", env=env)
    assert result.exit_code == 0, result.output
    assert f"use/{rid}: balance" in result.stdout
    again = await people.cli(*use, "--amount", "1.50", env=env)
    assert again.exit_code == 0 and "(already recorded)" in again.stdout, again.output
    too_much = ("--amount", "99999999999.00", "--request-id", f"{rid}-2")
    refused = await people.cli(*use[:-4], *gateway, *too_much, env=env)
    assert refused.exit_code != 0 and "--amount" in refused.output, refused.output
    unapproved = await people.cli(*use, "--amount", "1.50")
    assert unapproved.exit_code != 0
    assert "ACHIEVEMENTS_APPROVER_TOKEN" in unapproved.output, unapproved.output
    # The ledger is written by the fund's activity just after the use: read until it is there.
    deadline = time.monotonic() + 20
    while True:
        shown = await people.cli("fund", "show", "SYN-UNI", as_user=APPROVER)
        assert shown.exit_code == 0, shown.output
        if "cli purpose" in shown.stdout or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "cli purpose" in shown.stdout and "approver:approver.syn-uni" in shown.stdout
