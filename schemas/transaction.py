"""Listings, deals, technology contracts and instalment payments (plan items 8, 10, 11)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.money import CENT, Money, Rate, to_cents
from schemas.policy import Policy
from schemas.text import Line


class PricingMethod(StrEnum):
    AGREEMENT = "agreement"
    AUCTION = "auction"
    BIDDING = "bidding"


class ContractType(StrEnum):
    DEVELOPMENT = "development"
    TRANSFER = "transfer"
    LICENCE = "licence"
    CONSULTING = "consulting"
    SERVICE = "service"


class ListingStatus(StrEnum):
    OPEN = "open"
    DEALT = "dealt"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class Listing(BaseModel):
    model_config = ConfigDict(frozen=True)

    exchange: Line
    listing_id: Line
    status: ListingStatus
    asking_price: Money
    pricing: PricingMethod
    listed_at: AwareDatetime
    publicity_ends_at: AwareDatetime
    mandatory: bool = False
    # 0 for the first listings; each re-listing after every listing expired is a new round.
    listing_round: int = 0


class Bid(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    exchange: Line
    listing_id: Line
    bidder: Line = Field(min_length=1, max_length=200)
    amount: Money
    placed_at: AwareDatetime


class TechnologyManager(BaseModel):
    """A professional technology manager (broker) who brokered a deal (plan item 7)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Line = Field(min_length=1, max_length=100)
    certificate_number: Line = Field(pattern=r"^[A-Za-z0-9-]{4,40}$")


class TransferInstitution(BaseModel):
    """A technology-transfer institution that brokered a deal (plan item 6)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Line = Field(pattern=r"^[A-Za-z0-9-]{2,32}$")
    name: Line = Field(min_length=2, max_length=200)


class Brokerage(BaseModel):
    """Who brokered a deal and their service fee: a cost taken from the first payments until
    covered, before the split (Distribution.of), so the fee never makes net income negative."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    technology_manager: TechnologyManager | None = None
    transfer_institution: TransferInstitution | None = None
    service_fee: Money = Decimal("0.00")

    @model_validator(mode="after")
    def _someone_brokered(self) -> Brokerage:
        if self.technology_manager is None and self.transfer_institution is None:
            raise ValueError("a brokerage names a technology_manager or a transfer_institution")
        return self


def check_service_fee(amount: Decimal, brokerage: Brokerage | None) -> None:
    """A fee above the deal's amount could only be paid out of the institution's own pocket."""
    if brokerage is not None and brokerage.service_fee > amount:
        raise ValueError(f"brokerage.service_fee exceeds the deal amount ({amount})")


class Deal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    exchange: Line
    listing_id: Line
    buyer: Line = Field(min_length=1, max_length=200)
    contract_type: ContractType
    amount: Money
    instalments: int = Field(default=1, ge=1, le=60)
    closed_at: AwareDatetime
    # Plan items 6 and 7: the broker of the deal, if any (added later: absent on older deals).
    brokerage: Brokerage | None = None

    @model_validator(mode="after")
    def _fee_within_amount(self) -> Deal:
        check_service_fee(self.amount, self.brokerage)
        return self

    @property
    def service_fee(self) -> Decimal:
        return self.brokerage.service_fee if self.brokerage is not None else Decimal("0.00")


class DealRejection(BaseModel):
    """A deal the workflow refused, still to be refused on the exchange that took it."""

    model_config = ConfigDict(frozen=True)

    deal: Deal
    reason: Line


class ContractRegistration(BaseModel):
    model_config = ConfigDict(frozen=True)

    certificate_number: Line
    verified_amount: Money
    tax_preference_eligible: bool
    registered_at: AwareDatetime


class Payment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Line = Field(min_length=1, max_length=100)
    exchange: Line
    listing_id: Line
    instalment: int = Field(ge=1, le=60)
    amount: Money
    costs: Money = Decimal("0.00")
    paid_at: AwareDatetime

    @model_validator(mode="after")
    def _costs_within_amount(self) -> Payment:
        if self.costs > self.amount:
            raise ValueError("costs exceed the payment amount")
        return self


class Distribution(BaseModel):
    """How one payment's net income is split; the parts sum to the net to the cent.

    net = team_owner_income + team_reward + tto_fund + institution. The team's own part (it owns
    the achievement, in whole or in part, or holds a right of use) is the team's whole; the
    institution's part is split by its policy. Fields after `policy_version` came with ownership
    and default to an institution-owned achievement, so recorded distributions still load.
    """

    model_config = ConfigDict(frozen=True)

    net_income: Money
    team_reward: Money
    tto_fund: Money
    institution: Money
    policy_version: Line
    # The institution's part of the net (1: it owns the achievement alone; plan item 3).
    institution_part: Rate = Decimal("1")
    team_owner_income: Money = Decimal("0.00")
    # The broker's service fee taken from this payment before the split (plan items 6, 7).
    service_fee: Money = Decimal("0.00")

    @classmethod
    def of(
        cls,
        payment: Payment,
        policy: Policy,
        *,
        team_rounds_up: bool = True,
        institution_part: Decimal = Decimal(1),
        fee_due: Decimal = Decimal("0.00"),
    ) -> Distribution:
        """The team's share rounds up to the cent, so it is never below rate x net; the cent comes
        out of the institution's remainder (or, when the rates leave it none, the TTO fund's).

        With `institution_part` below 1 (ownership shared with the team, or a right of use), the
        team's own part, net x (1 - part), also rounds up to the cent, and only the rest is
        split by the policy: the team's reward is rate x that rest, rounded up.

        team_rounds_up=False is the former half-up rounding, kept only so that workflows replay
        the payments they recorded before the change (workflow.patched("team-share-rounds-up")).

        `fee_due` is what is left of the broker's service fee: this payment pays as much of it as
        its income after costs covers, never more, so net income is never negative.
        """
        fee = min(fee_due, payment.amount - payment.costs)
        net = payment.amount - payment.costs - fee
        owned = (net * (1 - institution_part)).quantize(CENT, rounding=ROUND_CEILING)
        shared = net - owned
        if not team_rounds_up:
            team = to_cents(shared * policy.team_reward_rate)
            tto = to_cents(shared * policy.tto_fund_rate)
        else:
            team = (shared * policy.team_reward_rate).quantize(CENT, rounding=ROUND_CEILING)
            tto = min(to_cents(shared * policy.tto_fund_rate), shared - team)
        return cls(
            net_income=net,
            team_reward=team,
            tto_fund=tto,
            institution=shared - team - tto,
            policy_version=policy.version,
            institution_part=institution_part,
            team_owner_income=owned,
            service_fee=fee,
        )


class RecordedPayment(BaseModel):
    model_config = ConfigDict(frozen=True)

    payment: Payment
    distribution: Distribution
    received_at: AwareDatetime  # workflow time, which paces the instalment clock
