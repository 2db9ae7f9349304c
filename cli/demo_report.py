"""The demo's last step: the year's annual report, in Chinese, as HTML and PDF, written where
the demo says, fetched through the gateway with the regulator's own token (every institution)."""

from __future__ import annotations

from pathlib import Path

import httpx

from core.settings import Settings
from sandboxes.identity_provider import SyntheticSignIn

REGULATOR = "regulator.shstc"
FORMATS = ("html", "pdf")
# Printing every institution's report takes a few seconds a page on a busy machine.
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class ReportNotWritten(Exception):
    """The gateway refused or failed the report: its status and the detail it gave."""


async def write_annual_report(
    http: httpx.AsyncClient, settings: Settings, people: SyntheticSignIn, year: int
) -> tuple[list[Path], str | None]:
    """The report's files, HTML then PDF, under the data directory's reports/, and why the
    PDF was not printed, if it was not: a machine without Pango or a Chinese font (a fresh one
    with only Python) still runs the demo and gets the HTML, with what to install."""
    headers = await people.headers(REGULATOR)
    folder = settings.data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in FORMATS:
        response = await http.get(
            f"{settings.gateway_url}/reports/annual/{year}",
            params={"format": fmt, "lang": "zh"},
            headers=headers,
            timeout=TIMEOUT,
        )
        if fmt == "pdf" and response.status_code == 503:
            return written, _detail(response)
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:300]
            raise ReportNotWritten(f"{fmt}: the gateway answered {response.status_code}: {detail}")
        path = folder / f"annual-report-{year}-zh.{fmt}"
        path.write_bytes(response.content)
        written.append(path.resolve())
    return written, None


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:300]
