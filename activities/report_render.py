"""The annual report as JSON, CSV or a self-contained HTML page (inline SVG, no network)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from html import escape

from activities.reports import report_rows
from schemas.report import InstitutionAnnualReport

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COLOURS = ("#1f6feb", "#2da44e", "#bf8700", "#cf222e", "#8250df", "#0a7d83", "#6e7781")


def to_json(reports: Sequence[InstitutionAnnualReport]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in reports], indent=2, ensure_ascii=False)


def to_csv(reports: Sequence[InstitutionAnnualReport]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=["institution", "year", "part", "item", "count", "amount"]
    )
    writer.writeheader()
    for report in reports:
        writer.writerows(report_rows(report))
    return out.getvalue()


def _cny(amount: Decimal) -> str:
    return f"¥{amount:,.2f}"


def _short(amount: Decimal) -> str:
    """Axis labels: ¥1.2M rather than ¥1,234,567.89."""
    value = float(amount)  # display only; every figure shown in full elsewhere is exact
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"¥{value / div:.1f}{unit}"
    return f"¥{value:.0f}"


def _funnel_svg(funnel: dict[str, int]) -> str:
    width, row, gap = 640, 34, 6
    top = max(funnel.values(), default=0) or 1
    parts = [
        f'<svg class="chart" data-chart="funnel" viewBox="0 0 {width} '
        f'{len(funnel) * (row + gap)}" role="img" aria-label="Stage funnel">'
    ]
    for i, (stage, n) in enumerate(funnel.items()):
        w = max(2.0, (width - 220) * n / top)
        x = 160 + ((width - 220) - w) / 2
        y = i * (row + gap)
        label = escape(stage.replace("_", " "))
        parts.append(
            f'<text x="150" y="{y + row / 2 + 5}" text-anchor="end" class="lbl">{label}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" rx="4" '
            f'fill="{COLOURS[i % len(COLOURS)]}"><title>{label}: {n}</title></rect>'
            f'<text x="{width - 50}" y="{y + row / 2 + 5}" class="val">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bars_svg(
    name: str, labels: Sequence[str], values: Sequence[Decimal], label: str, width: int = 640
) -> str:
    height, left, bottom, top_pad = 260, 70, 40, 24
    top = max(values, default=Decimal(0)) or Decimal(1)
    slot = (width - left - 10) / max(1, len(values))
    plot = height - bottom - top_pad
    parts = [
        f'<svg class="chart" data-chart="{name}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'class="axis"/>',
    ]
    for frac in (0.5, 1.0):
        y = height - bottom - plot * frac
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{_short(top * Decimal(str(frac)))}</text>"
        )
    for i, (text, value) in enumerate(zip(labels, values, strict=True)):
        h = float(plot * value / top)
        x = left + i * slot + slot * 0.15
        y = height - bottom - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{max(h, 0):.1f}" '
            f'rx="3" fill="{COLOURS[0] if name == "cash" else COLOURS[i % len(COLOURS)]}">'
            f"<title>{escape(text)}: {_cny(value)}</title></rect>"
            f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'class="tick">{escape(text)}</text>'
        )
        if value:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{y - 5:.1f}" text-anchor="middle" '
                f'class="val">{_short(value)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _card(title: str, value: str) -> str:
    head = f'<div class="card"><div class="k">{escape(title)}</div>'
    return f'{head}<div class="v">{value}</div></div>'


def _table(rows: Sequence[tuple[str, str, str]]) -> str:
    body = "".join(
        f"<tr><td>{escape(a)}</td><td class='n'>{escape(b)}</td><td class='n'>{escape(c)}</td></tr>"
        for a, b, c in rows
    )
    return f"<table><tr><th></th><th>Count</th><th>Amount</th></tr>{body}</table>"


def _closed(r: InstitutionAnnualReport) -> str:
    if r.closes_at is None:
        return ""
    return f"; books close {escape(r.closes_at.isoformat())}"


def _corrections(r: InstitutionAnnualReport) -> str:
    """Earlier years' late events: that year's filed report stands, the difference is here."""
    if not r.corrections:
        return ""
    rows: list[tuple[str, str, str]] = []
    for c in r.corrections:
        rows += [
            (f"{c.year}: events recorded after its books closed", str(c.events), ""),
            ("  achievements disclosed", str(c.disclosed), ""),
            ("  contracts", str(c.contracts.count), _cny(c.contracts.amount)),
            ("  cash received", str(c.payments), _cny(c.cash_received)),
            ("    costs", "", _cny(c.costs)),
            ("    net income", "", _cny(c.net_income)),
            ("    team reward", "", _cny(c.team_reward)),
            ("    TTO fund", "", _cny(c.tto_fund)),
            ("    institution", "", _cny(c.institution)),
            ("  companies created", str(c.companies_created), ""),
            ("  equity registered", str(c.equity_registered), _cny(c.equity_held)),
        ]
    return f"<details open><summary>Corrections to earlier years</summary>{_table(rows)}</details>"


def _section(r: InstitutionAnnualReport) -> str:
    contracts = r.contracts.by_type
    people = "not recorded" if r.rewards.people_rewarded is None else str(r.rewards.people_rewarded)
    i = r.income
    parts_rows: list[tuple[str, str, str]] = [
        ("Achievements disclosed", str(r.achievements.disclosed), ""),
        *(
            (f"  field: {k.replace('_', ' ')}", str(n), "")
            for k, n in r.achievements.by_field.items()
        ),
        *(
            (f"  funding: {k.replace('_', ' ')}", str(n), "")
            for k, n in r.achievements.by_funding_kind.items()
        ),
        *(
            (f"  ownership: {k.replace('_', ' ')}", str(n), "")
            for k, n in r.achievements.by_ownership.items()
        ),
        ("Transfers", str(r.deals.transfers.count), _cny(r.deals.transfers.amount)),
        ("Licences", str(r.deals.licences.count), _cny(r.deals.licences.amount)),
        (
            "Equity investments (equity held)",
            str(r.deals.equity_investments.count),
            _cny(r.deals.equity_investments.amount),
        ),
        *((f"Contracts: {k}", str(c.count), _cny(c.amount)) for k, c in contracts.items()),
        ("Contracts: total", str(r.contracts.total.count), _cny(r.contracts.total.amount)),
        ("Cash received", str(i.payments), _cny(i.cash_received)),
        ("  costs", "", _cny(i.costs)),
        ("  net income", "", _cny(i.net_income)),
        ("  team as owner", "", _cny(i.team_owner_income)),
        ("  team reward", "", _cny(i.team_reward)),
        ("  TTO fund", "", _cny(i.tto_fund)),
        ("  institution", "", _cny(i.institution)),
        ("Rewards paid (teams)", str(r.rewards.teams_rewarded), _cny(r.rewards.rewards_paid)),
        ("People rewarded", people, ""),
        ("Companies created", str(r.companies.companies_created), ""),
        (
            "Equity registered (state-owned)",
            f"{r.companies.equity_registered} ({r.companies.state_owned_equity})",
            _cny(r.companies.equity_held),
        ),
    ]
    return f"""
<section>
<h2>{escape(r.institution_code)} · {r.year}</h2>
<div class="cards">
{_card("Cash received", _cny(i.cash_received))}
{_card("Contract value", _cny(r.contracts.total.amount))}
{_card("Rewards paid", _cny(r.rewards.rewards_paid))}
{_card("Companies created", str(r.companies.companies_created))}
</div>
<div class="grid2">
<figure><figcaption>Stage funnel (achievements entering each stage)</figcaption>
{_funnel_svg(r.funnel)}</figure>
<figure><figcaption>Contract amounts by type</figcaption>
{_bars_svg("contracts", list(contracts), [c.amount for c in contracts.values()], "Contracts")}
</figure>
<figure class="wide"><figcaption>Cash received by month</figcaption>
{_bars_svg("cash", MONTHS, i.by_month, "Cash received by month", width=1300)}</figure>
</div>
<details open><summary>All figures</summary>{_table(parts_rows)}</details>
{_corrections(r)}
<p class="foot">{r.events_in_year} lifecycle events in {r.year}, by business date in
{escape(r.time_zone)}{_closed(r)}; generated {escape(r.generated_at.isoformat())}. Amounts in
CNY, from recorded events only.</p>
</section>"""


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1f2328;
background:#f6f8fa}
h1{font-size:22px;margin:0 0 16px}h2{font-size:18px;margin:0 0 12px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:20px;margin:0 0 24px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:16px}
.card{flex:1;min-width:150px;border:1px solid #d0d7de;border-radius:6px;padding:10px 14px}
.card .k{color:#656d76;font-size:12px}.card .v{font-size:20px;font-weight:600}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}.wide{grid-column:1/3}
figure{margin:0}figcaption{font-weight:600;margin-bottom:6px}
.chart{width:100%;height:auto;display:block}
.lbl,.tick{font-size:12px;fill:#424a53}.val{font-size:12px;fill:#1f2328;font-weight:600}
.axis{stroke:#8c959f}.grid{stroke:#d0d7de;stroke-dasharray:3 3}
table{border-collapse:collapse;margin-top:8px;min-width:60%}
td,th{border-bottom:1px solid #eaeef2;padding:3px 10px;text-align:left;white-space:pre}
.n{text-align:right;font-variant-numeric:tabular-nums}.foot{color:#656d76;font-size:12px}
"""


def to_html(reports: Sequence[InstitutionAnnualReport], year: int) -> str:
    sections = "".join(_section(r) for r in reports) or "<p>No institution had events.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Annual report on achievement transformation {year}</title>
<style>{_CSS}</style></head>
<body><h1>Annual report on achievement transformation · {year}</h1>{sections}</body></html>
"""
