"""Bodies of the webhooks the gateway accepts, and their mapping to workflow signal arguments.

The exchange's own contract lives in schemas.exchange_api; the incubator, proof-of-concept fund
and registry envelopes are defined here because only the gateway receives them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.commands import ListingExpired
from schemas.disclosure import AchievementId
from schemas.exchange_api import ExchangeWebhook, WebhookType
from schemas.incubation import (
    CompanyFounded,
    IncubationExit,
    IncubationMilestone,
    IncubatorAdmission,
)
from schemas.proof_of_concept import PocMilestoneReport
from schemas.text import Line
from schemas.transaction import Bid, Deal, Payment


class MissingPart(ValueError):
    """An exchange webhook whose type needs a data part that the body lacks."""

    def __init__(self, field: str, type: WebhookType) -> None:
        super().__init__(f"{field} is required for a {type.value} webhook")
        self.field = field


def exchange_signal_arg(hook: ExchangeWebhook) -> Bid | Deal | Payment | ListingExpired:
    """The signal argument an exchange webhook stands for; occurred_at is the event's time."""
    common = {"event_id": hook.event_id, "exchange": hook.exchange, "listing_id": hook.listing_id}
    if hook.type is WebhookType.BID:
        if hook.bid is None:
            raise MissingPart("bid", hook.type)
        return Bid(
            **common, bidder=hook.bid.bidder, amount=hook.bid.amount, placed_at=hook.occurred_at
        )
    if hook.type is WebhookType.DEAL:
        if hook.deal is None:
            raise MissingPart("deal", hook.type)
        return Deal(
            **common,
            buyer=hook.deal.buyer,
            contract_type=hook.deal.contract_type,
            amount=hook.deal.amount,
            instalments=hook.deal.instalments,
            closed_at=hook.occurred_at,
            brokerage=hook.deal.brokerage,
        )
    if hook.type is WebhookType.PAYMENT:
        if hook.payment is None:
            raise MissingPart("payment", hook.type)
        return Payment(
            **common,
            instalment=hook.payment.instalment,
            amount=hook.payment.amount,
            costs=hook.payment.costs,
            paid_at=hook.occurred_at,
        )
    return ListingExpired(**common)


# Incubator: each event is the schemas.incubation model plus the envelope fields.


class CompanyFoundedWebhook(CompanyFounded):
    type: Literal["company_founded"]
    achievement_id: AchievementId


class IncubatorAdmittedWebhook(IncubatorAdmission):
    type: Literal["incubator_admitted"]
    achievement_id: AchievementId


class IncubationMilestoneWebhook(IncubationMilestone):
    type: Literal["incubation_milestone"]
    achievement_id: AchievementId


class IncubationExitWebhook(IncubationExit):
    type: Literal["incubation_exit"]
    achievement_id: AchievementId


IncubatorEvent = Annotated[
    CompanyFoundedWebhook
    | IncubatorAdmittedWebhook
    | IncubationMilestoneWebhook
    | IncubationExitWebhook,
    Field(discriminator="type"),
]


class IncubatorWebhook(RootModel[IncubatorEvent]):
    """Body of every incubator webhook; event_id makes redelivery harmless."""

    def signal_arg(
        self,
    ) -> CompanyFounded | IncubatorAdmission | IncubationMilestone | IncubationExit:
        """The schemas.incubation model without the envelope, as the workflow's signal takes it."""
        event = self.root
        data = event.model_dump(exclude={"type", "achievement_id"})
        if isinstance(event, CompanyFoundedWebhook):
            return CompanyFounded.model_validate(data)
        if isinstance(event, IncubatorAdmittedWebhook):
            return IncubatorAdmission.model_validate(data)
        if isinstance(event, IncubationMilestoneWebhook):
            return IncubationMilestone.model_validate(data)
        return IncubationExit.model_validate(data)


class PocFundWebhook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["milestone_reported"]
    achievement_id: AchievementId
    report: PocMilestoneReport


class RegistryWebhook(BaseModel):
    """The registry sends nothing the workflow waits for yet: each notice is signalled and the
    lifecycle records it as refused, with the reason (other fields are accepted, not kept)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    event_id: Line = Field(min_length=1, max_length=100)
    type: Line = Field(min_length=1, max_length=100)
    achievement_id: AchievementId

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
