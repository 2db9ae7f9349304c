"""The demo's fund uses: once the achievements are done, each institution's officer spends part
of its transfer fund on a purpose of the plan, approved by the institution's approver, through
the gateway as a person would (their own tokens)."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from rich.console import Console

from schemas.money import CENT

if TYPE_CHECKING:
    from cli.demo import Parties

# What the demo spends, and on what (plan item 4: the office's work and its people).
PURPOSES = (
    (Decimal("0.40"), "专利维护费 (patent maintenance fees)"),
    (Decimal("0.25"), "技术经理人培训 (training of technology managers)"),
)


async def record_fund_uses(parties: Parties, institutions: list[str], run_tag: str) -> None:
    """Two uses per institution with a balance, each a share of it rounded down to the cent;
    the request ids are the run's, so a re-run of the same tag records nothing twice."""
    console = Console()
    for code in sorted(set(institutions)):
        officer = await parties.people.headers(f"officer.{code.lower()}")
        approver = await parties.people.headers(f"approver.{code.lower()}")
        url = f"{parties.gateway}/funds/{code}"
        read = await parties.http.get(url, headers=officer)
        if read.status_code != 200:
            console.print(f"[yellow]fund of {code}: {read.status_code} {read.text}[/]")
            continue
        balance = Decimal(read.json()["balance"])
        for n, (share, purpose) in enumerate(PURPOSES, start=1):
            amount = (balance * share).quantize(CENT, rounding=ROUND_DOWN)
            if amount <= 0:
                continue
            body = {"request_id": f"demo-{run_tag}-{n}", "amount": str(amount), "purpose": purpose}
            r = await parties.http.post(
                f"{url}/uses",
                json=body,
                headers={**officer, "X-Approver-Token": approver["Authorization"]},
            )
            if r.status_code == 200:
                left = r.json()["balance"]
                console.print(f"fund of {code}: {amount} CNY for {purpose}; balance {left}")
            else:
                console.print(f"[yellow]fund of {code}: use refused {r.status_code} {r.text}[/]")
