"""The operator overview as one self-contained HTML page: no script, nothing fetched.

Every value is escaped: titles and reasons are user input. The page is also served with a
Content-Security-Policy that forbids scripts, so a missed escape still could not run one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from schemas.overview import AttentionRow, Overview

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328}
table{border-collapse:collapse;margin:8px 0 24px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.n{text-align:right}
tr.overdue td.since{color:#cf222e;font-weight:600}
"""


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def _cell(value: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(value) if value is not None else '')}</td>"


def _attention_row(row: AttentionRow) -> str:
    name = escape(row.achievement_id)
    href = escape(row.ui_url, quote=True) if row.ui_url else None
    link = f'<a href="{href}" rel="noopener">{name}</a>' if href else name
    why = "; ".join(
        part
        for part in (
            f"overdue since {_when(row.waiting_until)}" if row.overdue else "",
            f"needs a person since {_when(row.needs_attention_since)}"
            + (f" ({row.attention_reason})" if row.attention_reason else "")
            if row.needs_attention_since
            else "",
        )
        if part
    )
    cls = ' class="overdue"' if row.overdue else ""
    return (
        f'<tr{cls} data-achievement="{escape(row.achievement_id, quote=True)}">'
        f"<td>{link}</td>"
        + _cell(row.institution_code)
        + _cell(row.title)
        + _cell(row.stage)
        + _cell(row.waiting_on)
        + _cell(why, "since")
        + _cell(row.next_action or "see the workflow's current details")
        + "</tr>"
    )


def render_overview(overview: Overview) -> str:
    scope = escape(overview.institution) if overview.institution else "every institution"
    total = sum(c.lifecycles for c in overview.stages)
    stages = "".join(
        f"<tr>{_cell(c.stage)}{_cell(c.lifecycles, 'n')}{_cell(c.overdue, 'n')}"
        f"{_cell(c.needs_person, 'n')}</tr>"
        for c in overview.stages
    )
    if overview.attention:
        attention = (
            '<table id="attention"><tr><th>achievement</th><th>institution</th><th>title</th>'
            "<th>stage</th><th>waiting for</th><th>since</th><th>next action</th></tr>"
            + "".join(_attention_row(r) for r in overview.attention)
            + "</table>"
        )
    else:
        attention = '<p id="attention">Nothing is overdue and nobody needs to act.</p>'
    more = (
        "<p>More rows need attention than are shown: narrow with "
        "<code>achievements list --needs-attention</code> or <code>--overdue</code>.</p>"
        if overview.more_attention
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Achievements overview: {scope}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Achievements overview: {scope}</h1>"
        f"<p>{total} lifecycles, as of {_when(overview.generated_at)} (from PostgreSQL).</p>"
        '<h2>Per stage</h2><table id="stages"><tr><th>stage</th><th>lifecycles</th>'
        f"<th>overdue</th><th>needs a person</th></tr>{stages}</table>"
        f"<h2>Overdue or needing a person, oldest first</h2>{attention}{more}"
        "</body></html>"
    )
