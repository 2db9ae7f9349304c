"""The report as one self-contained HTML document (inline SVG, no script, nothing fetched):
what a browser shows and what the PDF is printed from."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from activities.report.amounts import short
from activities.report.labels import DEFAULT_LANG, Lang, t
from activities.report.sections import CORRECTIONS, SECTIONS
from schemas.report import InstitutionAnnualReport

# A CJK font first: the PDF is printed with fontconfig's fonts (Debian's fonts-noto-cjk).
FONTS = (
    "'Noto Sans CJK SC','Noto Sans SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',"
    "'WenQuanYi Micro Hei',sans-serif"
)

_CSS = f"""
@page{{size:A4;margin:14mm 12mm}}
body{{font:13px/1.5 {FONTS};margin:24px;color:#1f2328;background:#fff}}
h1{{font-size:22px;margin:0 0 4px}}h2{{font-size:18px;margin:0 0 12px}}
h3{{font-size:15px;margin:18px 0 6px;border-bottom:1px solid #d0d7de;padding-bottom:2px}}
.sub{{color:#656d76;margin:0 0 16px}}
.institution{{border:1px solid #d0d7de;border-radius:8px;padding:18px;margin:0 0 24px;
break-before:page}}
.institution:first-of-type{{break-before:auto}}
h3,figcaption{{break-after:avoid}}figure,table{{break-inside:avoid}}
.cards{{display:flex;gap:10px;flex-wrap:wrap;margin-bottom:10px}}
.card{{flex:1;min-width:110px;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px}}
.card .k{{color:#656d76;font-size:12px}}.card .v{{font-size:18px;font-weight:600}}
figure{{margin:6px 0}}figcaption{{font-weight:600;margin-bottom:4px}}
.chart{{max-width:100%;height:auto;display:block}}
table{{border-collapse:collapse;margin-top:6px;min-width:70%}}
td,th{{border-bottom:1px solid #eaeef2;padding:2px 10px;text-align:left}}
.d1{{padding-left:26px}}.d2{{padding-left:42px}}
.n{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
.foot{{color:#656d76;font-size:11px}}
"""


def _card(title: str, value: str) -> str:
    return (
        f'<div class="card"><div class="k">{escape(title)}</div><div class="v">{value}</div></div>'
    )


def _institution(r: InstitutionAnnualReport, lang: Lang) -> str:
    i = r.income
    cards = "".join(
        _card(t(key, lang), escape(value))
        for key, value in (
            ("cash_received", short(i.cash_received, lang)),
            ("contracts_total", short(r.contracts.total.amount, lang)),
            ("rewards_paid", short(r.rewards.rewards_paid, lang)),
            ("companies_created", f"{r.companies.companies_created:,}"),
        )
    )
    parts = [s.html(r, lang) for s in SECTIONS]
    if r.corrections:
        parts.append(CORRECTIONS.html(r, lang))
    close = (
        t("foot_close", lang, at=r.closes_at.isoformat(timespec="minutes")) if r.closes_at else ""
    )
    foot = t(
        "foot",
        lang,
        year=r.year,
        events=f"{r.events_in_year:,}",
        zone=r.time_zone,
        close=close,
        at=r.generated_at.isoformat(timespec="seconds"),
    )
    return (
        f'<section class="institution" data-institution="{escape(r.institution_code)}">'
        f"<h2>{escape(r.institution_code)} · {r.year}</h2>"
        f'<div class="cards">{cards}</div>{"".join(parts)}'
        f'<p class="foot">{escape(foot)}</p></section>'
    )


def to_html(
    reports: Sequence[InstitutionAnnualReport], year: int, lang: Lang = DEFAULT_LANG
) -> str:
    """Chinese unless asked for English; the other language's title stands beneath."""
    other: Lang = "en" if lang == "zh" else "zh"
    body = "".join(_institution(r, lang) for r in reports) or (
        f"<p>{escape(t('no_institution', lang))}</p>"
    )
    html_lang = "zh-CN" if lang == "zh" else "en"
    return f"""<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(t("title", lang))} · {year}</title>
<style>{_CSS}</style></head>
<body><h1>{escape(t("title", lang))} · {year}</h1>
<p class="sub">{escape(t("title", other))} · {year}</p>{body}</body></html>
"""
