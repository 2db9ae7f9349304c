"""External events the lifecycle does not apply: kept with their reason, never dropped.

A webhook is answered 2xx once its signal is delivered, so the sender never sends it again;
whatever the workflow then declines to apply must leave a trace (an `external_event_refused`
event, and the last refusals in the state for `achievements status`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.incubation import IncubationExit, IncubationMilestone, IncubatorAdmission
from schemas.text import Line

# The refusals the state keeps for `status` (every one is also an event in the feed).
REFUSALS_KEPT = 50

# Incubator events that wait for the company to be founded before they apply.
HeldIncubatorEvent = IncubatorAdmission | IncubationMilestone | IncubationExit


class ExternalEvent(BaseModel):
    """An event of an outside system that no other signal takes: a registry notice, or a
    proof-of-concept fund report when no proof of concept runs. The lifecycle records it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: Literal["registry", "poc-fund"]
    type: Line = Field(min_length=1, max_length=100)
    event_id: Line = Field(min_length=1, max_length=100)
    # A few validated facts of the event (e.g. the milestone id); never a sender's raw extras.
    details: dict[Line, Line] = Field(default_factory=dict, max_length=10)


class RefusedEvent(BaseModel):
    """One external event the lifecycle did not apply, and why."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(description="The external event's type, e.g. deal, incubator_admitted")
    event_id: str
    source: str = Field(description="exchange:<exchange>, incubator, registry or poc-fund")
    reason: str
    refused_at: AwareDatetime


def held_event_type(event: HeldIncubatorEvent) -> str:
    """The incubator's webhook type of a held event, as the incubator named it."""
    if isinstance(event, IncubatorAdmission):
        return "incubator_admitted"
    if isinstance(event, IncubationMilestone):
        return "incubation_milestone"
    return "incubation_exit"
