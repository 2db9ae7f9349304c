"""5. The annual report over N lifecycle events vs hand-written SQL over the same table:
bench/annual_report.py (its own entry point too), folded into the harness.

Two floors: one aggregate of the money figures alone (what the issue's target was first
measured against), and hand-written queries computing every figure the report has (the same
work, so that ratio is the cost of the report's code path)."""

from __future__ import annotations

from bench.annual_report import run
from bench.harness import Figure, Result, Size

SIZES = {"tiny": (5_000, 5, 1), "full": (1_000_000, 20, 3)}  # events, institutions, repeat


async def measure(size: Size) -> Result:
    events, institutions, repeat = SIZES[size]
    r = await run(events, institutions, repeat)
    return Result(
        benchmark="report",
        size=size,
        figures=[
            Figure(
                f"annual report build, {r['events']:,} events",
                "s",
                r["report_seconds"],
                r["baseline_sql_seconds"],
                1.2,
                "lower",
                floor_label="one hand-written SQL aggregate of the money figures",
                note=f"median of {repeat}; loading took {r['load_seconds']} s",
            ),
            Figure(
                f"annual report build, {r['events']:,} events, same figures",
                "s",
                r["report_seconds"],
                r["baseline_full_sql_seconds"],
                1.2,
                "lower",
                floor_label="hand-written SQL of every figure the report has (7 grouped queries)",
                note=f"median of {repeat}",
            ),
        ],
        details=r,
        seconds=float(r["load_seconds"])
        + (r["report_seconds"] + r["baseline_sql_seconds"] + r["baseline_full_sql_seconds"])
        * repeat,
    )
