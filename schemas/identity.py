"""Who acts: the roles people hold and the principal recorded on every event they cause.

The gateway builds an Actor from a verified bearer token (never from a request body) and
passes it with each command, so the workflow's events and the projection name who did what.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.text import Line


class Role(StrEnum):
    """The roles the gateway understands, as the identity provider names them."""

    # Technology-transfer office staff: disclose, route, activate, withdraw, read their own.
    TTO_OFFICER = "tto-officer"
    # Grants statutory exemptions (mandatory listing, plan item 8) for their institution.
    APPROVER = "approver"
    # Reviews only what they are assigned, as themselves.
    EXPERT = "expert"
    # Takes the proof-of-concept go/no-go.
    POC_FUND_OFFICER = "poc-fund-officer"
    # The municipal science and technology commission: reads everything, changes nothing.
    REGULATOR = "regulator"


class Actor(BaseModel):
    """The authenticated principal behind a command, as recorded in history and events."""

    model_config = ConfigDict(frozen=True)

    subject: Line = Field(min_length=1, max_length=255, description="The token's `sub`")
    role: Role = Field(description="The role this command was authorised by")
    institution: Line | None = Field(
        default=None, max_length=64, description="The token's institution, if any"
    )
    name: Line | None = Field(default=None, max_length=200)
    client_id: Line | None = Field(default=None, max_length=255)

    @property
    def label(self) -> str:
        """`role:subject`, the event source convention (e.g. `expert:li.wei`)."""
        return f"{self.role.value}:{self.subject}"
