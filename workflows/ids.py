"""Workflow ids of an achievement: one place, so the workflows, gateway, CLI, tests and bench
agree. Ids are what idempotency rests on: a disclosure started twice finds the same workflow."""

from __future__ import annotations

WORKFLOW_ID_PREFIX = "achievement-"
POC_SUFFIX = "-poc"


def workflow_id(achievement_id: str) -> str:
    """The lifecycle entity workflow of an achievement."""
    return f"{WORKFLOW_ID_PREFIX}{achievement_id}"


def poc_child_id(lifecycle_workflow_id: str) -> str:
    """The proof-of-concept child of a lifecycle, named after its parent's workflow id."""
    return f"{lifecycle_workflow_id}{POC_SUFFIX}"


def poc_workflow_id(achievement_id: str) -> str:
    """The proof-of-concept child workflow of an achievement."""
    return poc_child_id(workflow_id(achievement_id))


FUND_PREFIX = "transfer-fund-"


def fund_workflow_id(institution_code: str) -> str:
    """The transfer fund of an institution: one entity workflow holds its balance."""
    return f"{FUND_PREFIX}{institution_code}"
