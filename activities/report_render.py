"""The annual report as JSON, CSV, a self-contained HTML page or a PDF printed from that page.

HTML and PDF are in Chinese unless English is asked for (activities/report/).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from activities.report.labels import DEFAULT_LANG, LANGS, Lang
from activities.report.page import to_html
from activities.report.pdf import PdfUnavailable, check_pdf_support, to_pdf
from activities.report.rows import report_rows
from schemas.report import InstitutionAnnualReport

__all__ = [
    "DEFAULT_LANG",
    "LANGS",
    "Lang",
    "PdfUnavailable",
    "check_pdf_support",
    "to_csv",
    "to_html",
    "to_json",
    "to_pdf",
]


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
