"""How amounts and axis values read: 元 in full with thousands grouped, 万元/亿元 for short.

Display only: each figure stays an exact Decimal in the report; a short form is rounded half up
for the eye, and the full amount is always in the figures table.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from activities.report.labels import Lang

WAN, YI = Decimal(10_000), Decimal(100_000_000)
_STEPS = (Decimal(1), Decimal(2), Decimal(5))


def yuan(amount: Decimal) -> str:
    """1,234,567.89: the full amount, grouped by thousands (the tables say the unit, 元)."""
    return f"{amount:,.2f}"


def short(amount: Decimal, lang: Lang) -> str:
    """123.46 万元 / 1.20 亿元 in Chinese; ¥1.23M / ¥1.00B in English."""
    a = abs(amount)
    if lang == "zh":
        for unit, name in ((YI, "亿元"), (WAN, "万元")):
            if a >= unit:
                return f"{_round(amount / unit, 2):,} {name}"
        return f"{_round(amount, 2):,} 元"
    for unit, name in ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "k")):
        if a >= unit:
            return f"¥{_round(amount / unit, 2):,}{name}"
    return f"¥{_round(amount, 2):,}"


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def nice_step(span: Decimal, intervals: int = 5) -> Decimal:
    """The smallest 1, 2 or 5 x 10^k at least span / intervals: ticks at round values."""
    if span <= 0:
        return Decimal(1)
    raw = span / intervals
    exponent = raw.adjusted()  # 10^exponent <= raw < 10^(exponent + 1)
    for mantissa in (*_STEPS, Decimal(10)):
        step = mantissa.scaleb(exponent)
        if step >= raw:
            return step
    raise AssertionError("unreachable: 10 x 10^k >= raw")


def linear_ticks(top: Decimal, intervals: int = 5) -> list[Decimal]:
    """0, step, 2 step ... up to the first tick at or above `top` (the axis' end)."""
    step = nice_step(top, intervals)
    ticks, value = [Decimal(0)], Decimal(0)
    while value < top:
        value += step
        ticks.append(value)
    if len(ticks) == 1:  # everything is zero: one step of axis
        ticks.append(step)
    return ticks


def log_ticks(low: Decimal, top: Decimal) -> list[Decimal]:
    """Powers of ten from the decade at or below `low` to the one at or above `top`."""
    first = low.adjusted()
    last = top.adjusted() + (0 if top == Decimal(1).scaleb(top.adjusted()) else 1)
    return [Decimal(1).scaleb(k) for k in range(first, max(last, first + 1) + 1)]


def axis_unit(top: Decimal, lang: Lang) -> tuple[Decimal, str]:
    """One unit for a whole axis, from its largest tick: (divisor, name)."""
    if lang == "zh":
        if top >= YI:
            return YI, "亿元"
        if top >= WAN:
            return WAN, "万元"
        return Decimal(1), "元"
    for unit, name in ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "k")):
        if top >= unit:
            return unit, f"¥{name}"
    return Decimal(1), "¥"


def tick_label(value: Decimal, unit: Decimal) -> str:
    """A tick in the axis' unit, exactly: 500, 1,000, 2.5, 0.01 (never 500.6)."""
    scaled = (value / unit).normalize()
    if scaled == scaled.to_integral_value():
        return f"{int(scaled):,}"
    return f"{scaled:,f}"


def decade_label(value: Decimal, lang: Lang) -> str:
    """A log axis' tick with its own unit: 10万, 1亿, 10亿 / ¥100k, ¥1M, ¥1B."""
    units: tuple[tuple[Decimal, str], ...]
    if lang == "zh":
        units = ((YI, "亿"), (WAN, "万"), (Decimal(1), ""))
        suffix = "元" if value < WAN else ""
    else:
        units = (
            (Decimal(10**9), "B"),
            (Decimal(10**6), "M"),
            (Decimal(10**3), "k"),
            (Decimal(1), ""),
        )
        suffix = ""
    for unit, name in units:
        if value >= unit:
            text = f"{tick_label(value, unit)}{name}{suffix}"
            return text if lang == "zh" else f"¥{text}"
    return tick_label(value, Decimal(1))
