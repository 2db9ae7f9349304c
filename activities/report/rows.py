"""The report as flat (part, item, count, amount) rows: the CSV format, and easy to eyeball."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.report import InstitutionAnnualReport


def report_rows(report: InstitutionAnnualReport) -> list[dict[str, Any]]:
    """One row per figure; a part per earlier year corrected."""
    rows: list[dict[str, Any]] = []

    def add(part: str, item: str, count: int | None = None, amount: Decimal | None = None) -> None:
        rows.append(
            {
                "institution": report.institution_code,
                "year": report.year,
                "part": part,
                "item": item,
                "count": "" if count is None else count,
                "amount": "" if amount is None else str(amount),
            }
        )

    a = report.achievements
    add("achievements", "disclosed", a.disclosed)
    for k, n in a.by_field.items():
        add("achievements", f"field:{k}", n)
    for k, n in a.by_funding_kind.items():
        add("achievements", f"funding:{k}", n)
    for k, n in a.by_ownership.items():
        add("achievements", f"ownership:{k}", n)
    for k, n in a.by_ip_kind.items():
        add("achievements", f"ip:{k}", n)
    d = report.deals
    add("deals", "transfers", d.transfers.count, d.transfers.amount)
    add("deals", "licences", d.licences.count, d.licences.amount)
    add("deals", "equity_investments", d.equity_investments.count, d.equity_investments.amount)
    for k, ca in report.contracts.by_type.items():
        add("contracts", k, ca.count, ca.amount)
    add("contracts", "total", report.contracts.total.count, report.contracts.total.amount)
    add("contracts", "verified_total", amount=report.contracts.verified_total)
    tax = report.contracts.tax_preference_eligible
    add("contracts", "tax_preference_eligible", tax.count, tax.amount)
    i = report.income
    add("income", "cash_received", i.payments, i.cash_received)
    for name in (
        "costs",
        "service_fees",
        "net_income",
        "team_owner_income",
        "team_reward",
        "tto_fund",
        "institution",
    ):
        add("income", name, amount=getattr(i, name))
    for month, cash in enumerate(i.by_month, start=1):
        add("income", f"month:{month:02d}", amount=cash)
    r = report.rewards
    add("rewards", "rewards_paid", amount=r.rewards_paid)
    add("rewards", "teams_rewarded", r.teams_rewarded)
    add("rewards", "people_rewarded", r.people_rewarded)
    co = report.companies
    add("companies", "companies_created", co.companies_created)
    add("companies", "equity_registered", co.equity_registered, co.equity_held)
    add("companies", "state_owned_equity", co.state_owned_equity)
    add("listings", "mandatory_triggered", report.listings.mandatory_triggered)
    add("listings", "mandatory_exempted", report.listings.mandatory_exempted)
    add("poc", "grants", report.poc.grants, report.poc.granted_amount)
    # Parts a report built before them does not have (None): no rows.
    if report.brokered is not None:
        b = report.brokered
        for part, brokers in (
            ("transfer_institution", b.transfer_institutions),
            ("technology_manager", b.technology_managers),
        ):
            for x in brokers:
                add(part, f"{x.id}:deals", x.deals, x.amount)
                add(part, f"{x.id}:fees_agreed", amount=x.fees_agreed)
                add(part, f"{x.id}:fees_paid", amount=x.fees_paid)
        for e in b.team_equity:  # shares in per cent, in the amount column
            item = f"{e.achievement_id}:{e.equity_certificate}"
            add("team_equity", f"{item}:team_equity_share_percent", 1, e.team_equity_share)
            add("team_equity", f"{item}:reward_share_percent", amount=e.team_reward_equity_share)
    if report.fund is not None:
        f = report.fund
        add("fund", "opening_balance", amount=f.opening_balance)
        add("fund", "accrued", f.accruals, f.accrued)
        add("fund", "used", f.uses, f.used)
        for u in f.by_purpose:
            add("fund", f"purpose:{u.purpose}", u.uses, u.amount)
        add("fund", "closing_balance", amount=f.closing_balance)
    for stage, n in report.funnel.items():
        add("funnel", stage, n)
    # Late events of earlier, closed years: one part per year they belong to.
    for c in report.corrections:
        part = f"correction:{c.year}"
        add(part, "events", c.events)
        add(part, "disclosed", c.disclosed)
        add(part, "contracts", c.contracts.count, c.contracts.amount)
        add(part, "cash_received", c.payments, c.cash_received)
        for name in ("costs", "net_income", "team_reward", "tto_fund", "institution"):
            add(part, name, amount=getattr(c, name))
        add(part, "companies_created", c.companies_created)
        add(part, "equity_registered", c.equity_registered, c.equity_held)
    return rows
