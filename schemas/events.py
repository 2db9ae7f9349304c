"""Lifecycle events: every state change, typed, timestamped, with its source."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.identity import Actor


class EventType(StrEnum):
    DISCLOSED = "disclosed"
    REGISTERED = "registered"
    HELD_AS_RESOURCE = "held_as_resource"
    ACTIVATED = "activated"
    STAGE_ENTERED = "stage_entered"
    TECHNOLOGY_SEARCHED = "technology_searched"
    REVIEW_SUBMITTED = "review_submitted"
    REVIEW_REMINDER = "review_reminder"
    REVIEW_ESCALATED = "review_escalated"
    EVALUATED = "evaluated"
    POC_FUNDED = "poc_funded"
    POC_MILESTONE = "poc_milestone"
    POC_MILESTONE_OVERDUE = "poc_milestone_overdue"
    POC_DECIDED = "poc_decided"
    POC_CANCELLED = "poc_cancelled"
    LISTED = "listed"
    BID_RECEIVED = "bid_received"
    DEAL_CLOSED = "deal_closed"
    DEAL_REJECTED = "deal_rejected"
    LISTING_EXPIRED = "listing_expired"
    LISTING_WITHDRAWN = "listing_withdrawn"
    CONTRACT_REGISTERED = "contract_registered"
    PAYMENT_RECEIVED = "payment_received"
    PAYMENT_OVERDUE = "payment_overdue"
    COMPANY_FOUNDED = "company_founded"
    EQUITY_REGISTERED = "equity_registered"
    INCUBATOR_ADMITTED = "incubator_admitted"
    INCUBATION_MILESTONE = "incubation_milestone"
    INCUBATION_EXITED = "incubation_exited"
    MANDATORY_LISTING_EXEMPTED = "mandatory_listing_exempted"
    MANDATORY_LISTING_TRIGGERED = "mandatory_listing_triggered"
    REPORT_SUBMITTED = "report_submitted"
    WITHDRAWN = "withdrawn"
    ABANDONED = "abandoned"
    COMPLETED = "completed"
    # An external event the lifecycle did not apply, with the reason (nothing is dropped).
    EXTERNAL_EVENT_REFUSED = "external_event_refused"
    # Plan item 6: evaluation asked of an evaluation institution through the registry, and its
    # signed report as the registry relayed it (`evaluated` then says by: institution).
    EVALUATION_REQUESTED = "evaluation_requested"
    EVALUATION_REPORTED = "evaluation_reported"


class LifecycleEvent(BaseModel):
    """Appended to PostgreSQL once per event_id (a retried activity never appends twice)."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="Deterministic per workflow step (workflow.uuid4())")
    achievement_id: str
    workflow_id: str
    institution_code: str
    type: EventType
    stage: str
    occurred_at: AwareDatetime
    source: str = Field(description="workflow, registry, exchange, expert:<id>, operator:<id>, ...")
    payload: dict[str, Any] = Field(default_factory=dict)
    actor: Actor | None = Field(
        default=None, description="The authenticated person who caused it; None for systems"
    )
