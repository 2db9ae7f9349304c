"""Replay the committed histories (tests/histories/, recorded from real runs of each path)
with the current workflow code: a change that is not gated with workflow.patched fails here,
before it can break a lifecycle that has been running for years.

Histories recorded before a patch stay in a subfolder named after it, so both paths replay.
To record them anew (only when a path is added, never to paper over a failure):
    ACHIEVEMENTS_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_lifecycle_rules.py \
        tests/test_lifecycle_time_skipping.py tests/test_continue_as_new.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.lifecycle import HISTORIES
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.settings import Settings
from core.temporal import data_converter
from workers.worker import WORKFLOWS

RECORDED = sorted(HISTORIES.rglob("*.json"))


def test_every_path_has_a_recorded_history() -> None:
    names = {p.stem for p in RECORDED}
    assert {
        "five_year_full_path",
        "resource_then_activation",
        "review_sla_escalation",
        "poc_no_go",
        "mandatory_listing_from_resource",
        "contract_in_time_late_payment",
        "withdraw_mid_transaction",
        "deal_on_second_exchange",
        "after_continue_as_new_payments",
    } <= names


def _history(path: Path) -> WorkflowHistory:
    record = json.loads(path.read_text(encoding="utf-8"))
    return WorkflowHistory.from_json(record["workflow_id"], record["history"])


@pytest.mark.parametrize("path", RECORDED, ids=[str(p.relative_to(HISTORIES)) for p in RECORDED])
async def test_replay_committed_history(path: Path) -> None:
    history = _history(path)
    replayer = Replayer(
        workflows=list(WORKFLOWS), data_converter=data_converter(Settings(codec_keys=None))
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
