"""Workflow ids of an achievement: one place, so the gateway, CLI and tests agree."""

from __future__ import annotations

WORKFLOW_ID_PREFIX = "achievement-"


def workflow_id(achievement_id: str) -> str:
    """The lifecycle entity workflow of an achievement."""
    return f"{WORKFLOW_ID_PREFIX}{achievement_id}"


def poc_workflow_id(achievement_id: str) -> str:
    """Its proof-of-concept child workflow (the lifecycle names it `<parent id>-poc`)."""
    return f"{workflow_id(achievement_id)}-poc"
