"""The patch ledger is whole: every gate is in it, every gate's histories are committed, and
no workflow calls `workflow.patched` anywhere but workflows/patches.py."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from workflows import patches

ROOT = Path(__file__).resolve().parent.parent
GATES = [
    obj
    for name, obj in inspect.getmembers(patches, inspect.isfunction)
    if obj.__module__ == patches.__name__ and obj is not patches.decide_at_run_start
]


def test_every_gate_has_a_ledger_entry() -> None:
    ids_in_gates = {re.search(r"patched\((\w+)\.id\)", inspect.getsource(g)) for g in GATES}
    entries = {m.group(1) for m in ids_in_gates if m}
    assert len(entries) == len(GATES), "a gate that does not name its ledger entry"
    assert {getattr(patches, e).id for e in entries} == {p.id for p in patches.LEDGER}
    assert len({p.id for p in patches.LEDGER}) == len(patches.LEDGER)


@pytest.mark.parametrize("patch", patches.LEDGER, ids=[p.id for p in patches.LEDGER])
def test_histories_recorded_before_each_patch_are_committed(patch: patches.Patch) -> None:
    if patch.histories is None:
        return
    folder = ROOT / patch.histories
    # A folder is named after its patch, or after the change whose patches shipped together
    # (declared as such in patches.py: issue 13 and 15's branches each add some of theirs).
    shared = patch.histories in (patches.ISSUE_12_HISTORIES, patches.ISSUES_13_15_HISTORIES)
    assert folder.name == f"before-{patch.id}" or (
        folder.name.startswith("before-")
        and folder.name != f"before-{patch.id}"
        and (shared or sum(p.histories == patch.histories for p in patches.LEDGER) > 1)
    ), f"{folder.name}: not named after {patch.id} nor shared by patches shipped together"
    assert sorted(folder.glob("*.json")), f"{folder} holds no history"


def test_only_the_patches_module_calls_workflow_patched() -> None:
    callers = []
    for path in sorted((ROOT / "workflows").rglob("*.py")):
        if path.name == "patches.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("patched", "deprecate_patch"):
                callers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not callers, f"patch gates belong in workflows/patches.py: {callers}"


def test_gates_decided_at_run_start_are_in_the_ledger() -> None:
    assert set(patches.RUN_START_GATES) <= set(patches.LEDGER)


def test_gates_added_after_every_gate_call_patched_alone() -> None:
    """A run recorded with new-runs-take-every-gate but before a later gate must still take
    that gate's old path: only the gates before it in the ledger may answer through it."""
    after = patches.LEDGER[patches.LEDGER.index(patches.NEW_RUNS_TAKE_EVERY_GATE) + 1 :]
    for gate in GATES:
        source = inspect.getsource(gate)
        if any(f"patched({name}.id)" in source for name in _names(after)):
            assert "every_gate()" not in source, gate.__name__


def _names(entries: tuple[patches.Patch, ...]) -> list[str]:
    return [name for name, obj in vars(patches).items() if obj in entries]
