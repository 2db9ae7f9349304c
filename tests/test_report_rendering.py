"""The annual report as filed: Chinese and English HTML in Chromium, charts whose every bar
shows, the PDF turned into images, the gateway's formats, and the sections' unit."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pypdfium2 as pdfium
import pytest
import pytest_asyncio
from conftest import Stack
from report_data import DataSet, generate, record
from typer.testing import CliRunner, Result

from activities.report.amounts import (
    axis_unit,
    decade_label,
    linear_ticks,
    log_ticks,
    short,
    tick_label,
    yuan,
)
from activities.report.charts import COLOURS, bars_svg
from activities.report.pdf import chinese_fonts
from activities.report.sections import SECTIONS, Section
from activities.report_render import PdfUnavailable, check_pdf_support, to_html, to_pdf
from activities.reports import build_institution_report
from cli.main import app
from schemas.report import CountAmount, InstitutionAnnualReport

THIS_YEAR = datetime.now(UTC).year
YEARS = [THIS_YEAR - 3, THIS_YEAR - 2, THIS_YEAR - 1]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dataset(db: asyncpg.Pool) -> AsyncIterator[DataSet]:
    ds = generate(years=YEARS, institutions=1, per_year=9, seed=2024)
    await record(db, ds.events, ds)
    yield ds


# ---------------------------------------------------------------------------- HTML in Chromium


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes) into rows of pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    prev = bytearray(stride)
    for y in range(height):
        at = y * (stride + 1)
        f, line = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    rgb = [bytes(r[i] for i in range(len(r)) if i % channels < 3) for r in rows]
    return width, height, rgb


def _count_colour(rows: list[bytes], hex_colour: str) -> int:
    target = bytes.fromhex(hex_colour.lstrip("#"))
    return sum(1 for row in rows for i in range(0, len(row), 3) if row[i : i + 3] == target)


def _keep_and_decode(shot: Path) -> tuple[int, int, list[bytes]]:
    keep = os.environ.get("ACHIEVEMENTS_SCREENSHOT_DIR")  # e.g. a CI artifact folder
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "annual_report.png")
    return _png_pixels(shot.read_bytes())


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "Chromium is not installed: apt-get install -y chromium"
        if os.environ.get("ACHIEVEMENTS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium


async def _screenshot(
    html: str, tmp_path: Path, size: tuple[int, int], keep: bool = False
) -> tuple[int, int, list[bytes]]:
    """The page as headless Chromium paints it, decoded into rows of RGB pixels."""
    chromium = _chromium()
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(html, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={shot}",
        page.as_uri(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0 and shot.exists(), output.decode(errors="replace")[-2000:]
    if keep:
        return await asyncio.to_thread(_keep_and_decode, shot)
    return await asyncio.to_thread(_png_pixels, shot.read_bytes())


async def test_html_report_renders_its_charts_in_chromium(
    db: asyncpg.Pool, dataset: DataSet, tmp_path: Path
) -> None:
    _chromium()
    inst, year = dataset.institutions[0], YEARS[1]
    report = await build_institution_report(db, inst, year, datetime.now(UTC))
    assert report.income.cash_received > 0 and report.contracts.total.count > 0
    html = to_html([report], year)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html  # self-contained, nothing fetched
    # Chinese first: the title, the six parts and the plan's terms.
    assert '<html lang="zh-CN">' in html and "科技成果转化年度报告" in html
    for part in ("一、科技成果情况", "三、技术合同", "六、创设企业与股权", "概念验证资助"):
        assert part in html
    # Brokered deals and team equity, and the transfer fund, each a section of its own.
    assert report.brokered is not None and report.fund is not None
    for part in ("brokered", "fund"):
        assert f'data-part="{part}"' in html
    assert "技术转移机构与技术经理人促成交易" in html and "年末余额" in html
    # Tall enough for the whole report: the funnel is its last chart.
    width, height, rows = await _screenshot(html, tmp_path, (1280, 4000), keep=True)
    assert (width, height) == (1280, 4000)
    # The funnel's bars (one colour per stage) and the cash bars must be painted, not just text.
    painted = {c: _count_colour(rows, c) for c in ("#1f6feb", "#2da44e", "#bf8700", "#cf222e")}
    assert all(n > 200 for n in painted.values()), painted


def test_html_report_in_english_on_request() -> None:
    report = _dwarfed_report()
    html = to_html([report], report.year, "en")
    assert '<html lang="en">' in html and "1. Achievements" in html
    assert "一、科技成果情况" not in html
    assert "Contracts eligible for the tax preference" in html


def test_a_part_is_one_section_with_its_own_words() -> None:
    """The six parts first, in the statutory order; a part added later is one Section with its
    title, its own terms in both languages and its render function, nothing else to touch."""
    assert [s.key for s in SECTIONS][:6] == [
        "achievements",
        "deals",
        "contracts",
        "income",
        "rewards",
        "companies",
    ]
    brokers = Section(
        "brokers",
        ("技术经理人", "Technology managers"),
        lambda r, w: w.table([(w("deals"), 3, Decimal("1200000.00"), 0)]),
        terms={"deals": ("经纪成交", "Brokered deals")},
    )
    report = _dwarfed_report()
    zh, en = brokers.html(report, "zh"), brokers.html(report, "en")
    assert "<h3>技术经理人</h3>" in zh and "经纪成交" in zh and "1,200,000.00" in zh
    assert "<h3>Technology managers</h3>" in en and "Brokered deals" in en
    assert 'data-part="brokers"' in zh


# -------------------------------------------------------------------------- charts and the PDF


def test_axis_ticks_fall_on_round_values() -> None:
    for top in ("1000000000", "500600000", "1200000", "99999", "7", "0.5", "3.14", "0"):
        ticks = linear_ticks(Decimal(top))
        step = ticks[1] - ticks[0]
        assert (
            ticks[0] == 0 and ticks[-1] >= Decimal(top) and ticks[-2] < Decimal(top)
        ) or top == "0"
        # Every step is 1, 2 or 5 times a power of ten, and the ticks are its multiples.
        assert step.normalize().as_tuple().digits in ((1,), (2,), (5,)), (top, step)
        assert all(b - a == step for a, b in itertools.pairwise(ticks))
    # The axis of the issue: a 500.6 M top reads 0-600 in one unit, never "500.6".
    unit, name = axis_unit(Decimal("600000000"), "en")
    assert name == "¥M"
    labels = [tick_label(v, unit) for v in linear_ticks(Decimal("500600000"))]
    assert labels == ["0", "200", "400", "600"]
    unit, name = axis_unit(Decimal("1000000000"), "zh")
    assert (name, [tick_label(v, unit) for v in linear_ticks(Decimal("1E9"))]) == (
        "亿元",
        ["0", "2", "4", "6", "8", "10"],
    )
    assert [decade_label(v, "zh") for v in log_ticks(Decimal("100000"), Decimal("1E9"))] == [
        "10万",
        "100万",
        "1,000万",
        "1亿",
        "10亿",
    ]
    # Amounts: 元 in full grouped by thousands, 万元 / 亿元 short.
    assert yuan(Decimal("1234567.8")) == "1,234,567.80"
    assert short(Decimal("1234567.89"), "zh") == "123.46 万元"
    assert short(Decimal("1000000000"), "zh") == "10.00 亿元"


def _dwarfed_report() -> InstitutionAnnualReport:
    """A report whose contracts differ by three orders of magnitude, and no other chart ink."""
    amounts = {
        "development": "1000000000.00",
        "transfer": "1200000.00",
        "licence": "0.00",
        "consulting": "35000.00",
        "service": "500600000.00",
    }
    by_type = {
        k: CountAmount(count=1 if v != "0.00" else 0, amount=Decimal(v)) for k, v in amounts.items()
    }
    total = CountAmount(count=4, amount=sum((c.amount for c in by_type.values()), Decimal(0)))
    zero = Decimal("0.00")
    return InstitutionAnnualReport.model_validate(
        {
            "institution_code": "SYN-UNI",
            "year": THIS_YEAR - 1,
            "generated_at": datetime.now(UTC),
            "events_in_year": 9,
            "achievements": {
                "disclosed": 2,
                "by_field": {"biomedicine": 2},
                "by_funding_kind": {},
                "by_ip_kind": {"patent": 3, "technical_secret": 1},
            },
            "deals": {
                "transfers": by_type["transfer"],
                "licences": by_type["licence"],
                "equity_investments": CountAmount(),
            },
            "contracts": {
                "by_type": by_type,
                "total": total,
                "verified_total": total.amount,
                "tax_preference_eligible": by_type["development"],
            },
            "income": {
                "payments": 0,
                "cash_received": zero,
                "costs": zero,
                "net_income": zero,
                "team_reward": zero,
                "tto_fund": zero,
                "institution": zero,
                "by_month": [zero] * 12,
            },
            "rewards": {"rewards_paid": zero, "teams_rewarded": 0, "people_rewarded": None},
            "companies": {
                "companies_created": 0,
                "equity_registered": 0,
                "state_owned_equity": 0,
                "equity_held": zero,
            },
            "poc": {"grants": 1, "granted_amount": "300000.00"},
            "funnel": {},
            "brokered": {
                "institution_code": "SYN-UNI",
                "year": THIS_YEAR - 1,
                "time_zone": "Asia/Shanghai",
                "transfer_institutions": [_broker("TTI-1", "上海合成技术转移有限公司")],
                "technology_managers": [_broker("TM-1", "李合成")],
                "team_equity": [],
            },
            "fund": {
                "institution": "SYN-UNI",
                "year": THIS_YEAR - 1,
                "opening_balance": "100.00",
                "accruals": 1,
                "accrued": "50.00",
                "uses": 1,
                "used": "30.00",
                "closing_balance": "120.00",
                "by_purpose": [{"purpose": "专利维护", "uses": 1, "amount": "30.00"}],
            },
        }
    )


def _broker(id: str, name: str) -> dict[str, object]:
    return {
        "id": id,
        "name": name,
        "deals": 1,
        "amount": "1200000.00",
        "fees_agreed": "36000.00",
        "fees_paid": "12000.00",
    }


def _bars(svg: str) -> list[tuple[float, float, float, str]]:
    """(x, width, height, fill) of each bar the chart draws."""
    return [
        (float(x), float(w), float(h), fill)
        for x, w, h, fill in re.findall(
            r'<rect class="bar" data-value="[^"]*" x="([\d.]+)" y="[\d.]+" width="([\d.]+)" '
            r'height="([\d.]+)" fill="(#[0-9a-f]{6})"',
            svg,
        )
    ]


async def test_a_small_bar_stays_visible_beside_a_huge_one(tmp_path: Path) -> None:
    """1.2 M beside 1.0 B: the axis turns logarithmic, says so, and every bar is painted."""
    report = _dwarfed_report()
    values = [c.amount for c in report.contracts.by_type.values()]
    svg = bars_svg("contracts", list(report.contracts.by_type), values, "zh")
    assert 'data-scale="log"' in svg and "对数刻度" in svg
    bars = _bars(svg)
    assert len(bars) == 5
    for (_, _, h, _), value in zip(bars, values, strict=True):
        assert (h > 10) if value else (h == 0), (value, h)
    # Linear when the values are alike, its caption saying so and naming the unit.
    alike = bars_svg("x", ["a", "b"], [Decimal("800000"), Decimal("1000000")], "zh")
    assert 'data-scale="linear"' in alike and "线性刻度, 万元" in alike
    # Painted: in Chromium, each non-zero bar's own colour fills its column for several pixels.
    page = f"<!doctype html><body style='margin:0'>{svg}</body>"
    _, _, rows = await _screenshot(page, tmp_path, (640, 280))
    for (x, w, _, fill), value in zip(bars, values, strict=True):
        target = bytes.fromhex(fill[1:])
        column = [row[int(x + w / 2) * 3 : int(x + w / 2) * 3 + 3] for row in rows]
        painted = sum(1 for px in column if px == target)
        assert (painted >= 8) if value else (painted == 0), (fill, value, painted)


def _pdf_pages(pdf: bytes) -> list[Any]:
    """The PDF's pages as PIL images, at 100 dpi."""
    document = pdfium.PdfDocument(pdf)
    try:
        return [page.render(scale=100 / 72).to_pil().convert("RGB") for page in document]
    finally:
        document.close()


def _near(image: Any, hex_colour: str, tolerance: int = 12) -> int:
    """Pixels within `tolerance` of a colour (the PDF's colours are anti-aliased at edges)."""
    r, g, b = bytes.fromhex(hex_colour[1:])
    data = image.tobytes()
    return sum(
        1
        for i in range(0, len(data), 3)
        if abs(data[i] - r) <= tolerance
        and abs(data[i + 1] - g) <= tolerance
        and abs(data[i + 2] - b) <= tolerance
    )


async def test_pdf_report_prints_in_chinese_with_every_bar() -> None:
    try:
        check_pdf_support()
    except PdfUnavailable as exc:
        if os.environ.get("ACHIEVEMENTS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    report = _dwarfed_report()
    pdf = await asyncio.to_thread(to_pdf, [report], report.year)
    assert pdf.startswith(b"%PDF-")
    pages = await asyncio.to_thread(_pdf_pages, pdf)
    assert pages, "no page"
    document = pdfium.PdfDocument(pdf)
    try:
        text = "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    assert "科技成果转化年度报告" in text and "技术转让" in text and "专利" in text
    # The brokered deals' and the fund's sections print too.
    assert "技术经理人" in text and "李合成" in text and "36,000.00" in text
    assert "技术转移专项资金" in text and "年末余额" in text and "专利维护" in text
    # Ink where the charts are: each non-zero contract bar's colour (nothing else uses them).
    inked = [len(p.tobytes()) // 3 - _near(p, "#ffffff", 0) for p in pages]
    assert inked[0] > 10_000, inked
    for colour, value in zip(COLOURS, report.contracts.by_type.values(), strict=False):
        found = sum(_near(p, colour) for p in pages)
        assert (found > 40) if value.amount else (found < 40), (colour, value, found)


def test_pdf_without_a_chinese_font_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fontconfig with no font at all (an empty configuration) stands for a machine without
    fonts-noto-cjk: one clear error naming the package, not a PDF of empty boxes."""
    empty = tmp_path / "fonts.conf"
    empty.write_text('<?xml version="1.0"?><fontconfig></fontconfig>', encoding="utf-8")
    monkeypatch.setenv("FONTCONFIG_FILE", str(empty))
    assert chinese_fonts() == 0
    with pytest.raises(PdfUnavailable, match="fonts-noto-cjk"):
        to_pdf([_dwarfed_report()], THIS_YEAR - 1)


async def test_gateway_serves_the_report_as_pdf_and_in_either_language(
    stack: Stack, dataset: DataSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP with the regulator's real token: ?format=pdf, Accept: application/pdf, lang."""
    inst, year = dataset.institutions[0], YEARS[1]
    headers = await stack.headers("regulator.shstc")
    url = f"{stack.gateway_url}/reports/annual/{year}"
    async with httpx.AsyncClient(timeout=120) as http:
        html = await http.get(url, params={"institution": inst, "format": "html"}, headers=headers)
        english = await http.get(
            url, params={"institution": inst, "format": "html", "lang": "en"}, headers=headers
        )
        bad = await http.get(url, params={"institution": inst, "lang": "fr"}, headers=headers)
        try:
            check_pdf_support()
        except PdfUnavailable:
            pdf_ready = False
        else:
            pdf_ready = True
        if pdf_ready:
            asked = await http.get(
                url, params={"institution": inst, "format": "pdf"}, headers=headers
            )
            accepted = await http.get(
                url, params={"institution": inst}, headers=headers | {"Accept": "application/pdf"}
            )
        # A server without a font covering Chinese: one clear error, before any figure is read.
        empty = tmp_path / "fonts.conf"
        empty.write_text('<?xml version="1.0"?><fontconfig></fontconfig>', encoding="utf-8")
        monkeypatch.setenv("FONTCONFIG_FILE", str(empty))
        missing = await http.get(
            url, params={"institution": inst, "format": "pdf"}, headers=headers
        )
    assert html.status_code == 200 and "科技成果转化年度报告" in html.text, html.text[:300]
    assert english.status_code == 200 and "1. Achievements" in english.text
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.lang", bad.text
    assert missing.status_code == 503, missing.text
    assert "fonts-noto-cjk" in missing.json()["detail"]
    if not pdf_ready:
        pytest.skip("this machine cannot print PDF: checked the error only")
    for response in (asked, accepted):
        assert response.status_code == 200, response.text[:300]
        assert response.headers["content-type"] == "application/pdf"
        assert response.content.startswith(b"%PDF-")
        assert f"annual-report-{year}-{inst}-zh.pdf" in response.headers["content-disposition"]
    pages = await asyncio.to_thread(_pdf_pages, asked.content)
    assert pages and _near(pages[0], "#ffffff", 0) < len(pages[0].tobytes()) // 3


async def test_cli_writes_the_pdf_and_the_english_html(
    stack: Stack, dataset: DataSet, tmp_path: Path
) -> None:
    """`achievements report --pdf FILE` and `--format html --lang en`, with a real token."""
    inst, year = dataset.institutions[0], YEARS[1]
    token = (await stack.headers("regulator.shstc"))["Authorization"].split()[1]
    env = {"ACHIEVEMENTS_ACCESS_TOKEN": token}
    common = ["report", "--year", str(year), "--institution", inst]
    common += ["--gateway-url", stack.gateway_url]
    pdf, html = tmp_path / "report.pdf", tmp_path / "report.html"

    def run(*extra: str) -> Result:
        return CliRunner().invoke(app, [*common, *extra], env=env, catch_exceptions=False)

    english = await asyncio.to_thread(
        run, "--format", "html", "--lang", "en", "--output", str(html)
    )
    assert english.exit_code == 0, english.output
    assert "1. Achievements" in html.read_text(encoding="utf-8")
    try:
        check_pdf_support()
    except PdfUnavailable as exc:
        pytest.skip(f"this machine cannot print PDF: {exc}")
    printed = await asyncio.to_thread(run, "--pdf", str(pdf))
    assert printed.exit_code == 0, printed.output
    assert f"wrote {pdf.resolve()}" in printed.stderr
    assert pdf.read_bytes().startswith(b"%PDF-")
