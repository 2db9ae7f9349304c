"""The PDF, printed by WeasyPrint from the very HTML the browser shows, offline.

WeasyPrint needs Pango (Debian: libpango-1.0-0 libpangoft2-1.0-0, present with chromium) and
the report needs a font covering Chinese (Debian: fonts-noto-cjk), or every character would be
an empty box. Both are checked before printing: a missing one is one clear error naming what to
install, never a traceback and never a PDF of boxes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Sequence

from activities.report.labels import DEFAULT_LANG, Lang
from activities.report.page import to_html
from schemas.report import InstitutionAnnualReport

INSTALL_PANGO = "apt-get install -y libpango-1.0-0 libpangoft2-1.0-0"
INSTALL_CJK_FONT = "apt-get install -y fonts-noto-cjk"


# One report printed at a time per process: printing takes a core for seconds, and WeasyPrint
# does not promise that Pango and fontconfig are safe to share between threads.
_PRINTING = threading.Lock()


class PdfUnavailable(RuntimeError):
    """What this machine lacks to print the report, and how to install it."""


def _fontconfig() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("fontconfig")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.FcInitLoadConfigAndFonts.restype = ctypes.c_void_p
    lib.FcNameParse.restype = ctypes.c_void_p
    lib.FcNameParse.argtypes = [ctypes.c_char_p]
    lib.FcObjectSetBuild.restype = ctypes.c_void_p
    lib.FcFontList.restype = ctypes.POINTER(ctypes.c_int)  # FcFontSet: nfont first
    lib.FcFontList.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    for free in ("FcFontSetDestroy", "FcObjectSetDestroy", "FcPatternDestroy", "FcConfigDestroy"):
        getattr(lib, free).argtypes = [ctypes.c_void_p]
    return lib


def chinese_fonts() -> int:
    """How many fonts fontconfig (as configured now: FONTCONFIG_FILE) has covering Chinese."""
    lib = _fontconfig()
    if lib is None:
        return 0
    config = lib.FcInitLoadConfigAndFonts()
    pattern = lib.FcNameParse(b":lang=zh")
    objects = lib.FcObjectSetBuild(b"family", None)
    found = lib.FcFontList(config, pattern, objects)
    try:
        return found[0] if found else 0
    finally:
        if found:
            lib.FcFontSetDestroy(found)
        lib.FcObjectSetDestroy(objects)
        lib.FcPatternDestroy(pattern)
        lib.FcConfigDestroy(config)


def check_pdf_support() -> None:
    """Raise PdfUnavailable naming what to install, if anything is missing."""
    try:
        import weasyprint  # noqa: F401  (loads Pango through cffi)
    except ImportError as exc:
        raise PdfUnavailable(
            f"PDF rendering needs the Python package weasyprint (pip install weasyprint): {exc}"
        ) from None
    except OSError as exc:
        raise PdfUnavailable(
            f"PDF rendering needs Pango, which WeasyPrint could not load ({exc}): {INSTALL_PANGO}"
        ) from None
    if chinese_fonts() == 0:
        raise PdfUnavailable(
            f"PDF rendering needs a font covering Chinese and fontconfig has none: "
            f"{INSTALL_CJK_FONT}"
        )


def to_pdf(
    reports: Sequence[InstitutionAnnualReport], year: int, lang: Lang = DEFAULT_LANG
) -> bytes:
    """The report's HTML printed to PDF (A4). Blocking and CPU-bound: run it in a thread."""
    check_pdf_support()
    from weasyprint import HTML

    html = to_html(reports, year, lang)
    with _PRINTING:
        pdf: bytes = HTML(string=html, url_fetcher=_offline).write_pdf()
    return pdf


def _offline(url: str, *args: object, **kwargs: object) -> dict[str, object]:
    """The page is self-contained: anything it would fetch is a bug, not a download."""
    raise ValueError(f"the report fetches nothing; refused {url!r}")
