"""The report's parts, each a small self-contained unit: a title in both languages, its own
terms, and a function from the institution's report to HTML. SECTIONS is the one list the page
renders in order: a new part (a new model on InstitutionAnnualReport with a default) is one
more `Section` appended there, with its render function beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape

from activities.report.amounts import yuan
from activities.report.charts import bars_svg, funnel_svg
from activities.report.labels import BROKERED_TERMS, FUND_TERMS, MONTHS, Lang, t, term
from schemas.report import InstitutionAnnualReport

# (label, count, amount, depth): a row of a part's figures table; None leaves a cell empty.
Row = tuple[str, int | str | None, Decimal | None, int]


def _count(count: int | str | None) -> str:
    if count is None:
        return ""
    return f"{count:,}" if isinstance(count, int) else escape(count)


@dataclass(frozen=True)
class Words:
    """The words a section writes in: its own terms first, then the report's common ones."""

    lang: Lang
    own: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def __call__(self, key: str, **values: object) -> str:
        if key in self.own:
            zh, en = self.own[key]
            text = zh if self.lang == "zh" else en
            return text.format(**values) if values else text
        return t(key, self.lang, **values)

    def term(self, prefix: str, value: str) -> str:
        return term(prefix, value, self.lang)

    def table(self, rows: Sequence[Row]) -> str:
        """Label, count and amount in 元 (grouped by thousands); nested rows indented."""
        body = "".join(
            f'<tr><td class="d{depth}">{escape(label)}</td>'
            f'<td class="n">{_count(count)}</td>'
            f'<td class="n">{"" if amount is None else yuan(amount)}</td></tr>'
            for label, count, amount, depth in rows
        )
        head = f"<tr><th>{self('item')}</th><th>{self('count')}</th><th>{self('amount')}</th></tr>"
        return f"<table>{head}{body}</table>"


@dataclass(frozen=True)
class Section:
    key: str
    title: tuple[str, str]  # Chinese, English
    render: Callable[[InstitutionAnnualReport, Words], str]
    terms: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def html(self, report: InstitutionAnnualReport, lang: Lang) -> str:
        title = self.title[0] if lang == "zh" else self.title[1]
        body = self.render(report, Words(lang, self.terms))
        return (
            f'<section class="part" data-part="{self.key}"><h3>{escape(title)}</h3>{body}</section>'
        )


def _counts(prefix: str, counts: Mapping[str, int], w: Words) -> list[Row]:
    return [(w.term(prefix, k), n, None, 1) for k, n in counts.items()]


def _achievements(r: InstitutionAnnualReport, w: Words) -> str:
    a = r.achievements
    rows: list[Row] = [(w("disclosed"), a.disclosed, None, 0)]
    for key, prefix, counts in (
        ("by_field", "field", a.by_field),
        ("by_funding", "funding", a.by_funding_kind),
        ("by_ownership", "ownership", a.by_ownership),
        ("by_ip_kind", "ip", a.by_ip_kind),
    ):
        if counts:
            rows += [(w(key), None, None, 0), *_counts(prefix, counts, w)]
    return w.table(rows)


def _deals(r: InstitutionAnnualReport, w: Words) -> str:
    d = r.deals
    return w.table(
        [
            (w("transfers"), d.transfers.count, d.transfers.amount, 0),
            (w("licences"), d.licences.count, d.licences.amount, 0),
            (w("equity_investments"), d.equity_investments.count, d.equity_investments.amount, 0),
        ]
    )


def _contracts(r: InstitutionAnnualReport, w: Words) -> str:
    c = r.contracts
    kinds = [w.term("contract", k) for k in c.by_type]
    chart = bars_svg("contracts", kinds, [x.amount for x in c.by_type.values()], w.lang)
    rows: list[Row] = [
        (k, x.count, x.amount, 1) for k, x in zip(kinds, c.by_type.values(), strict=True)
    ]
    rows += [
        (w("contracts_total"), c.total.count, c.total.amount, 0),
        (w("verified_total"), None, c.verified_total, 1),
        (w("tax_eligible"), c.tax_preference_eligible.count, c.tax_preference_eligible.amount, 1),
    ]
    return (
        f"<figure><figcaption>{escape(w('contract_amounts'))}</figcaption>{chart}</figure>"
        f"{w.table(rows)}"
    )


def _income(r: InstitutionAnnualReport, w: Words) -> str:
    i = r.income
    chart = bars_svg("cash", MONTHS[w.lang], i.by_month, w.lang, width=720, one_colour=True)
    rows: list[Row] = [
        (w("cash_received"), i.payments, i.cash_received, 0),
        (w("costs"), None, i.costs, 1),
        (w("service_fees"), None, i.service_fees, 1),
        (w("net_income"), None, i.net_income, 1),
        (w("team_owner_income"), None, i.team_owner_income, 2),
        (w("team_reward"), None, i.team_reward, 2),
        (w("tto_fund"), None, i.tto_fund, 2),
        (w("institution"), None, i.institution, 2),
    ]
    return (
        f'<figure class="wide"><figcaption>{escape(w("cash_by_month"))}</figcaption>{chart}'
        f"</figure>{w.table(rows)}"
    )


def _rewards(r: InstitutionAnnualReport, w: Words) -> str:
    x = r.rewards
    people = x.people_rewarded
    rows: list[Row] = [
        (w("rewards_paid"), None, x.rewards_paid, 0),
        (w("teams_rewarded"), x.teams_rewarded, None, 0),
    ]
    rows.append((w("people_rewarded"), w("not_recorded") if people is None else people, None, 0))
    return w.table(rows)


def _companies(r: InstitutionAnnualReport, w: Words) -> str:
    c = r.companies
    return w.table(
        [
            (w("companies_created"), c.companies_created, None, 0),
            (w("equity_registered"), c.equity_registered, c.equity_held, 0),
            (w("state_owned_equity"), c.state_owned_equity, None, 1),
        ]
    )


def _listings(r: InstitutionAnnualReport, w: Words) -> str:
    x = r.listings
    return w.table(
        [
            (w("mandatory_triggered"), x.mandatory_triggered, None, 0),
            (w("mandatory_exempted"), x.mandatory_exempted, None, 0),
        ]
    )


def _poc(r: InstitutionAnnualReport, w: Words) -> str:
    return w.table([(w("poc_grants"), r.poc.grants, r.poc.granted_amount, 0)])


def _funnel(r: InstitutionAnnualReport, w: Words) -> str:
    stages = [(w.term("stage", s), n) for s, n in r.funnel.items()]
    return (
        f"<figure><figcaption>{escape(w('funnel_caption'))}</figcaption>"
        f"{funnel_svg(stages, w('funnel_caption'))}</figure>"
    )


def _corrections(r: InstitutionAnnualReport, w: Words) -> str:
    """Earlier years' late events: that year's filed report stands, the difference is here."""
    rows: list[Row] = []
    for c in r.corrections:
        rows += [
            (w("correction_of", year=c.year), c.events, None, 0),
            (w("disclosed"), c.disclosed, None, 1),
            (w("contracts_total"), c.contracts.count, c.contracts.amount, 1),
            (w("cash_received"), c.payments, c.cash_received, 1),
            (w("costs"), None, c.costs, 2),
            (w("net_income"), None, c.net_income, 2),
            (w("team_reward"), None, c.team_reward, 2),
            (w("tto_fund"), None, c.tto_fund, 2),
            (w("institution"), None, c.institution, 2),
            (w("companies_created"), c.companies_created, None, 1),
            (w("equity_registered"), c.equity_registered, c.equity_held, 1),
        ]
    return w.table(rows)


def _grid(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of several figures per row; `rows` are escaped or formatted already."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr><td>" + r[0] + "</td>" + "".join(f'<td class="n">{c}</td>' for c in r[1:]) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _not_built(w: Words) -> str:
    """A report built before the part was (an activity result in a recorded history)."""
    return f"<p>{escape(w('not_recorded'))}</p>"


def _brokered(r: InstitutionAnnualReport, w: Words) -> str:
    """Per transfer institution and technology manager: deals closed in the year, their amount,
    the fees agreed in them and the fees taken from the year's payments; then the equity
    registered for research teams (作价投资 团队股权奖励)."""
    b = r.brokered
    if b is None:
        return _not_built(w)
    out = []
    head = [w("broker"), w("deals"), w("deal_amount"), w("fees_agreed"), w("fees_paid")]
    for key, brokers in (
        ("transfer_institutions", b.transfer_institutions),
        ("technology_managers", b.technology_managers),
    ):
        rows = [
            [
                escape(w("named", name=x.name, id=x.id)),
                f"{x.deals:,}",
                *map(yuan, (x.amount, x.fees_agreed, x.fees_paid)),
            ]
            for x in brokers
        ]
        body = _grid(head, rows) if rows else f"<p>{escape(w('none'))}</p>"
        out.append(f"<h4>{escape(w(key))}</h4>{body}")
    equity = [
        [escape(e.achievement_id), escape(e.equity_certificate)]
        + [f"{v}%" for v in (e.equity_share, e.team_equity_share, e.team_reward_equity_share)]
        for e in b.team_equity
    ]
    head = [w("achievement"), w("certificate"), w("equity_share"), w("team_share"), w("reward")]
    body = _grid(head, equity) if equity else f"<p>{escape(w('none'))}</p>"
    out.append(f"<h4>{escape(w('team_equity'))}</h4>{body}")
    return "".join(out)


def _fund(r: InstitutionAnnualReport, w: Words) -> str:
    """The fund's year: opening + accrued - used = closing, the uses by purpose."""
    f = r.fund
    if f is None:
        return _not_built(w)
    rows: list[Row] = [
        (w("opening_balance"), None, f.opening_balance, 0),
        (w("accrued"), f.accruals, f.accrued, 0),
        (w("used"), f.uses, f.used, 0),
        *[(u.purpose, u.uses, u.amount, 1) for u in f.by_purpose],
        (w("closing_balance"), None, f.closing_balance, 0),
    ]
    return w.table(rows)


def _titled(key: str) -> tuple[str, str]:
    return t(key, "zh"), t(key, "en")


SECTIONS: list[Section] = [
    Section("achievements", _titled("part.achievements"), _achievements),
    Section("deals", _titled("part.deals"), _deals),
    Section("contracts", _titled("part.contracts"), _contracts),
    Section("income", _titled("part.income"), _income),
    Section("rewards", _titled("part.rewards"), _rewards),
    Section("companies", _titled("part.companies"), _companies),
    Section("listings", _titled("part.listings"), _listings),
    Section("poc", _titled("part.poc"), _poc),
    Section("brokered", _titled("part.brokered"), _brokered, BROKERED_TERMS),
    Section("fund", _titled("part.fund"), _fund, FUND_TERMS),
    Section("funnel", _titled("part.funnel"), _funnel),
]
# Shown only when the report has some: a filed year's late events.
CORRECTIONS = Section("corrections", _titled("part.corrections"), _corrections)
