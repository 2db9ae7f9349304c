"""The benchmarks still run: a tiny size of each, its JSON shape, and positive ratios.

No timing assertions: the figures of a tiny run mean nothing; `achievements bench --size full`
measures (docs/performance.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.harness import write
from bench.run import NAMES, quiet, run

FIGURE_KEYS = {"name", "unit", "engine", "floor", "ratio", "target", "better", "met"}


@pytest.mark.parametrize("name", NAMES)
async def test_tiny_run_writes_ratios(name: str, tmp_path: Path) -> None:
    quiet()
    results = await run([name], "tiny")
    doc = json.loads(write(results, "tiny", tmp_path).read_text(encoding="utf-8"))

    assert doc["size"] == "tiny"
    assert doc["dev_server_sqlite_pragmas"] == ["journal_mode=wal", "synchronous=normal"]
    [result] = doc["results"]
    assert result["benchmark"] == name
    assert result["figures"], "every benchmark reports at least one ratio"
    for figure in result["figures"]:
        assert FIGURE_KEYS <= set(figure)
        for key in ("engine", "floor", "ratio"):
            value = figure[key]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (
                f"{figure['name']}: {key}={value!r}"
            )
        assert figure["met"] in (True, False, None)
    for absolute in result["absolutes"]:
        assert absolute["value"] > 0
