"""One harness for every benchmark: sizes, figures as ratios to their floors, table and JSON."""

from __future__ import annotations

import json
import platform
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
Size = Literal["tiny", "full"]


@dataclass
class Figure:
    """One measured figure and its floor, measured in the same run on the same server.

    `ratio` is always engine ÷ floor; `better` says which way is good (throughput: higher;
    CPU, latency, time: lower) and `target` is the bar the ratio is held to."""

    name: str
    unit: str
    engine: float
    floor: float
    target: float | None
    better: Literal["higher", "lower"]
    floor_label: str = "bare workflow, same activities/signals/timers/updates"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.engine / self.floor if self.floor else float("inf")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.better == "higher" else self.ratio <= self.target

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 4), "met": self.met}


@dataclass
class Absolute:
    """A figure with an absolute bar instead of a floor (worker RSS, database bytes...)."""

    name: str
    unit: str
    value: float
    limit: float | None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.limit is None else self.value <= self.limit

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class Result:
    benchmark: str
    size: Size
    figures: list[Figure] = field(default_factory=list)
    absolutes: list[Absolute] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "size": self.size,
            "figures": [f.as_json() for f in self.figures],
            "absolutes": [a.as_json() for a in self.absolutes],
            "details": self.details,
            "seconds": round(self.seconds, 2),
        }


Runner = Callable[[Size], Awaitable[Result]]


def _fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def _met(met: bool | None) -> str:
    return "-" if met is None else ("[green]yes[/]" if met else "[red]NO[/]")


def table(results: list[Result]) -> Table:
    t = Table(title="Achievement Lifecycle Engine benchmarks (ratio = engine ÷ floor)")
    for col in ("benchmark", "figure", "engine", "floor", "ratio", "target", "met?"):
        t.add_column(col, justify="right" if col in ("engine", "floor", "ratio") else "left")
    for r in results:
        for f in r.figures:
            sign = "≥" if f.better == "higher" else "≤"
            target = f"{sign} {f.target}x" if f.target is not None else "-"
            t.add_row(
                r.benchmark,
                f"{f.name} ({f.unit})",
                _fmt(f.engine),
                _fmt(f.floor),
                f"{f.ratio:.2f}x",
                target,
                _met(f.met),
            )
        for a in r.absolutes:
            limit = f"≤ {_fmt(a.limit)} {a.unit}" if a.limit is not None else "-"
            t.add_row(
                r.benchmark, f"{a.name} ({a.unit})", _fmt(a.value), "", "", limit, _met(a.met)
            )
    return t


def write(
    results: list[Result], size: Size, out_dir: Path = RESULTS, name: str | None = None
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    names = "-".join(r.benchmark for r in results) if len(results) < 3 else "all"
    path = out_dir / (name or f"bench-{names}-{size}-{at.replace(':', '')}.json")
    doc = {
        "at": at,
        "size": size,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "dev_server_sqlite_pragmas": ["journal_mode=wal", "synchronous=normal"],
        "results": [r.as_json() for r in results],
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def show(results: list[Result], console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(results))
    for r in results:
        for f in r.figures:
            if f.note:
                console.print(f"[dim]{r.benchmark} / {f.name}: {f.note}[/]")
        for a in r.absolutes:
            if a.note:
                console.print(f"[dim]{r.benchmark} / {a.name}: {a.note}[/]")
        if r.details.get("note"):
            console.print(f"[dim]{r.benchmark}: {r.details['note']}[/]")
