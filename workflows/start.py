"""Starting a lifecycle: the one place that names the workflow, its summary for the UI and the
search attributes it starts with. Used by the gateway, the tests and the benchmarks alike.

Client-side code: the workflows never import it.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from schemas.lifecycle import LifecycleInput, LifecycleResult
from workflows import search_attributes as sa
from workflows.ids import workflow_id
from workflows.lifecycle import AchievementLifecycle
from workflows.lifecycle.details import STATIC_DETAILS

Lifecycle = WorkflowHandle[AchievementLifecycle, LifecycleResult]


async def start_lifecycle(client: Client, input: LifecycleInput, task_queue: str) -> Lifecycle:
    """Start the achievement's lifecycle; WorkflowAlreadyStartedError if it exists (any state:
    an achievement id is never reused)."""
    d = input.disclosure
    attributes: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.STAGE, "disclosure"),
        SearchAttributePair(sa.INSTITUTION, d.institution.code),
        SearchAttributePair(sa.TECHNOLOGY_FIELD, d.field.value),
        SearchAttributePair(sa.TRANSFORMATION_MODES, [m.value for m in d.intended_modes]),
        SearchAttributePair(sa.FUNDING_SOURCES, sorted({f.kind.value for f in d.funding})),
    ]
    return await client.start_workflow(
        AchievementLifecycle.run,
        input,
        id=workflow_id(d.achievement_id),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        # The summary is confidential: the UI shows title, institution and field only.
        static_summary=f"{d.title} | {d.institution.code} {d.institution.name} | {d.field.value}",
        # The stages in two lines, and where to look: the same for every lifecycle.
        static_details=STATIC_DETAILS,
        search_attributes=TypedSearchAttributes(attributes),
    )
