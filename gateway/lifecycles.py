"""The gateway's side of the lifecycle workflows: handles, Temporal failures as HTTP answers,
and the facts about an achievement that authorization needs (its institution and panel).

Those facts never change after disclosure, so they are cached: a command on a known
achievement costs no extra round trip for its tenancy check.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from fastapi import HTTPException
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core.temporal_ui import workflow_url
from schemas.lifecycle import LifecycleState
from workflows.ids import poc_workflow_id, workflow_id
from workflows.lifecycle import AchievementLifecycle
from workflows.proof_of_concept import ProofOfConcept

log = structlog.get_logger(__name__)

T = TypeVar("T")
NOT_FOUND = "no such achievement"
MAX_CACHED_FACTS = 100_000


@dataclass(frozen=True)
class AchievementFacts:
    """What authorization needs of an achievement; fixed at disclosure."""

    institution: str
    panel: tuple[str, ...]


class Lifecycles:
    def __init__(self, client: Client, ui_base: str = "http://localhost:8233") -> None:
        self.client = client
        self.ui_base = ui_base
        self._facts: OrderedDict[str, AchievementFacts] = OrderedDict()

    def ui_url(self, wid: str) -> str:
        """The workflow's page in the Temporal Web UI of this namespace."""
        return workflow_url(self.ui_base, self.client.namespace, wid)

    def handle(self, achievement_id: str) -> Any:
        return self.client.get_workflow_handle_for(
            AchievementLifecycle.run, workflow_id(achievement_id)
        )

    def poc_handle(self, achievement_id: str) -> Any:
        return self.client.get_workflow_handle_for(
            ProofOfConcept.run, poc_workflow_id(achievement_id)
        )

    async def status_of(self, wid: str) -> WorkflowExecutionStatus | None:
        """The status of the workflow's latest run, or None when there is no such workflow."""
        try:
            return (await self.client.get_workflow_handle(wid).describe()).status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def missing_or_closed(self, wid: str, what: str) -> HTTPException:
        """A NOT_FOUND from Temporal means either no such workflow or one already closed."""
        status = await self.status_of(wid)
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return HTTPException(404, f"no such {what}")
        return HTTPException(409, f"the {what} is already {status.name.lower()}")

    async def call(self, wid: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Temporal call on a workflow and translate its failures into HTTP answers."""
        try:
            return await fn()
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            log.info("update refused", workflow_id=wid, reason=message)
            raise HTTPException(409, message) from None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise HTTPException(504, "the workflow did not answer in time") from None
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
            raise HTTPException(409, f"the {what} cannot be read: {exc}") from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise await self.missing_or_closed(wid, what) from None
            raise

    async def state(self, achievement_id: str) -> LifecycleState:
        handle = self.handle(achievement_id)
        state: LifecycleState = await self.call(
            handle.id, "achievement", lambda: handle.query(AchievementLifecycle.state_query)
        )
        self._remember(state)
        return state

    async def facts(self, achievement_id: str) -> AchievementFacts:
        """Institution and panel, from the cache or one state query (404 if no such one)."""
        cached = self._facts.get(achievement_id)
        if cached is not None:
            self._facts.move_to_end(achievement_id)
            return cached
        state = await self.state(achievement_id)
        return self._remember(state)

    def _remember(self, state: LifecycleState) -> AchievementFacts:
        facts = AchievementFacts(state.disclosure.institution.code, tuple(state.reviewers))
        self._facts[state.achievement_id] = facts
        self._facts.move_to_end(state.achievement_id)
        while len(self._facts) > MAX_CACHED_FACTS:
            self._facts.popitem(last=False)
        return facts
