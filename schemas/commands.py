"""Commands people send to an achievement (as Temporal updates): activate, withdraw, exempt."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.disclosure import TransformationMode
from schemas.identity import Actor
from schemas.text import Line, Text


class Activation(BaseModel):
    """Wake a dormant scientific resource with the modes it will be transformed by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modes: list[TransformationMode] = Field(min_length=1, max_length=5)
    activated_by: Line = Field(min_length=1, max_length=100)
    reason: Text = Field(default="", max_length=2000)
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")


class Withdrawal(BaseModel):
    """Withdraw (by the institution) or abandon (after evaluation) at any stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Text = Field(min_length=3, max_length=2000)
    requested_by: Line = Field(min_length=1, max_length=100)
    abandon: bool = False
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")


class MandatoryListingExemption(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    justification: Text = Field(min_length=10, max_length=2000)
    approved_by: Line = Field(min_length=1, max_length=100)
    actor: Actor | None = Field(default=None, description="Set by the gateway from the token")


class ListingExpired(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    exchange: Line
    listing_id: Line
