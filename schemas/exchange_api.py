"""Wire contract of a technology exchange (search, listings, and the webhooks it sends)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.disclosure import TechnologyField
from schemas.money import Money
from schemas.text import Line, Text
from schemas.transaction import (
    Brokerage,
    ContractType,
    ListingStatus,
    PricingMethod,
    check_service_fee,
)

# The Yangtze River Delta network: the sandbox serves each of these as its own exchange.
KNOWN_EXCHANGES = ("sstec", "jstec", "zjtec", "ahtec")


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SearchRequest(_Request):
    field: TechnologyField
    title: Line = Field(min_length=3, max_length=300)


class CreateListingRequest(_Request):
    achievement_id: Line = Field(min_length=3, max_length=63)
    title: Line = Field(min_length=3, max_length=300)
    field: TechnologyField
    seller_institution: Line = Field(min_length=2, max_length=32)
    asking_price: Money
    pricing: PricingMethod
    # The exact end of publicity: one clock with the workflow, whatever the period (a sub-day
    # one included). The rounded publicity_days is the older form, still accepted.
    publicity_ends_at: AwareDatetime | None = Field(
        default=None,
        description="When publicity ends (never before the listing); wins over publicity_days",
    )
    publicity_days: int | None = Field(
        default=None, ge=0, le=365, description="Older form: whole days of publicity"
    )
    mandatory: bool = False

    @model_validator(mode="after")
    def _publicity_is_given(self) -> CreateListingRequest:
        if self.publicity_ends_at is None and self.publicity_days is None:
            raise ValueError("publicity_ends_at (or the older publicity_days) is required")
        return self


class ListingResponse(BaseModel):
    exchange: Line
    listing_id: Line
    achievement_id: Line
    status: ListingStatus
    listed_at: AwareDatetime
    publicity_ends_at: AwareDatetime


class WithdrawListingRequest(_Request):
    reason: Text = Field(min_length=3, max_length=500)


class RejectDealRequest(_Request):
    """The seller refuses a deal the exchange took (publicity not over, another deal first, a
    listing not of that exchange): the exchange drops it and the listing is open again."""

    reason: Text = Field(min_length=3, max_length=500)


class WebhookType(StrEnum):
    BID = "bid"
    DEAL = "deal"
    PAYMENT = "payment"
    LISTING_EXPIRED = "listing_expired"


class BidData(BaseModel):
    bidder: Line
    amount: Money


class DealData(BaseModel):
    buyer: Line
    contract_type: ContractType
    amount: Money
    instalments: int = Field(ge=1, le=60)
    # The technology manager and/or transfer institution that brokered it, and their fee.
    brokerage: Brokerage | None = None

    @model_validator(mode="after")
    def _fee_within_amount(self) -> DealData:
        check_service_fee(self.amount, self.brokerage)
        return self


class PaymentData(BaseModel):
    instalment: int = Field(ge=1, le=60)
    amount: Money
    costs: Money


class ExchangeWebhook(BaseModel):
    """Body of every webhook an exchange sends; event_id makes redelivery harmless."""

    model_config = ConfigDict(extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    type: WebhookType
    exchange: Line
    listing_id: Line
    achievement_id: Line
    occurred_at: AwareDatetime
    bid: BidData | None = None
    deal: DealData | None = None
    payment: PaymentData | None = None


class SimulatedBid(_Request):
    bidder: Line = Field(min_length=1, max_length=200)
    amount: Money


class SimulatedDeal(_Request):
    buyer: Line = Field(min_length=1, max_length=200)
    contract_type: ContractType
    amount: Money
    instalments: int = Field(default=1, ge=1, le=60)
    brokerage: Brokerage | None = None

    @model_validator(mode="after")
    def _fee_within_amount(self) -> SimulatedDeal:
        check_service_fee(self.amount, self.brokerage)
        return self


class SimulatedPayment(_Request):
    instalment: int = Field(ge=1, le=60)
    amount: Money
    costs: Money = Decimal("0.00")


class Faults(BaseModel):
    """Sandbox fault injection, set at start or at run time."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0, le=1)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    webhook_drop_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_delay_ms: int = Field(default=200, ge=0, le=600_000)


SandboxSystem = Literal["registry", "exchange"]
