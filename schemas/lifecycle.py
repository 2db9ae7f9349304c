"""The state of one achievement's lifecycle, carried whole through continue-as-new."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.commands import Withdrawal
from schemas.disclosure import Disclosure, TransformationMode
from schemas.evaluation import (
    EvaluationOutcome,
    OperatorDecision,
    Review,
    TechnologySearchResult,
)
from schemas.evaluation_institution import (
    EvaluationChoice,
    EvaluationRequested,
    InstitutionReport,
)
from schemas.events import LifecycleEvent
from schemas.identity import Actor
from schemas.incubation import (
    CompanyFounded,
    EquityRegistration,
    IncubationExit,
    IncubationMilestone,
    IncubatorAdmission,
)
from schemas.money import Money
from schemas.policy import Policy
from schemas.proof_of_concept import PocResult
from schemas.refusals import HeldIncubatorEvent, RefusedEvent
from schemas.transaction import (
    ContractRegistration,
    Deal,
    DealRejection,
    Listing,
    PricingMethod,
    RecordedPayment,
)


class Stage(StrEnum):
    DISCLOSURE = "disclosure"
    EVALUATION = "evaluation"
    PROOF_OF_CONCEPT = "proof_of_concept"
    TRANSACTION = "transaction"
    INCUBATION = "incubation"
    REPORTING = "reporting"
    RESOURCE = "resource"  # dormant scientific resource, activatable
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"
    ABANDONED = "abandoned"

    @property
    def is_final(self) -> bool:
        return self in (Stage.COMPLETED, Stage.WITHDRAWN, Stage.ABANDONED)


class AttentionReason(StrEnum):
    """Why a person must act now (the search attribute AttentionReason): the lifecycle cannot
    move on by itself until someone does."""

    REVIEW_ESCALATED = "review_escalated"  # reviews late past the grace: an officer routes it
    PAYMENT_OVERDUE = "payment_overdue"  # an instalment past its grace: chase the buyer
    POC_MILESTONE_OVERDUE = "poc_milestone_overdue"  # the fund awaits a milestone report


class StageEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Stage
    entered_at: AwareDatetime
    note: str = ""


class Waiting(BaseModel):
    """What the achievement waits for, in plain words, and until when; whether a person must
    act (since when, and why), and what moves it on."""

    model_config = ConfigDict(frozen=True)

    on: str
    # A deadline: once it has passed the wait is overdue (lists' --overdue filter).
    until: AwareDatetime | None = None
    # Set while a person must act (docs/architecture.md "What needs a person"); the projection
    # and the search attributes NeedsAttentionSince/AttentionReason say the same.
    attention_since: AwareDatetime | None = None
    attention_reason: AttentionReason | None = None
    # The command and the endpoint that move the wait on, in plain words.
    next_action: str | None = None


class LifecycleInput(BaseModel):
    """How an achievement starts; `resume` carries the state across continue-as-new."""

    model_config = ConfigDict(frozen=True)

    disclosure: Disclosure
    policy: Policy
    disclosed_at: AwareDatetime
    disclosed_by: str = "institution"
    # The officer who disclosed it, from the gateway's verified token (None in old histories).
    discloser: Actor | None = None
    reviewers: list[str] = Field(default_factory=list, description="Assigned expert panel")
    exchanges: list[str] = Field(default_factory=lambda: ["sstec"], min_length=1, max_length=4)
    asking_price: Money = Decimal("0.00")
    pricing: PricingMethod = PricingMethod.AGREEMENT
    resume: LifecycleState | None = None
    # Who evaluates, as the disclosure asked (None: as the policy says for its field).
    evaluation: EvaluationChoice | None = None


class LifecycleState(BaseModel):
    """Everything the workflow knows; the query returns it and continue-as-new carries it."""

    achievement_id: str
    workflow_id: str
    disclosure: Disclosure
    policy: Policy
    exchanges: list[str]
    reviewers: list[str]
    asking_price: Money
    pricing: PricingMethod
    stage: Stage = Stage.DISCLOSURE
    modes: list[TransformationMode] = Field(default_factory=list)
    timeline: list[StageEntry] = Field(default_factory=list)
    waiting: Waiting | None = None
    registration_number: str | None = None
    search: TechnologySearchResult | None = None
    reviews: list[Review] = Field(default_factory=list)
    evaluation: EvaluationOutcome | None = None
    poc: PocResult | None = None
    listings: list[Listing] = Field(default_factory=list)
    deal: Deal | None = None
    contract: ContractRegistration | None = None
    payments: list[RecordedPayment] = Field(default_factory=list)
    company: CompanyFounded | None = None
    equity: EquityRegistration | None = None
    incubator: IncubatorAdmission | None = None
    incubation_milestones: list[IncubationMilestone] = Field(default_factory=list)
    incubation_exit: IncubationExit | None = None
    report_number: str | None = None
    outcome_reason: str | None = None
    deal_accepted_at: AwareDatetime | None = None
    withdrawal: Withdrawal | None = None
    review_reminded: bool = False
    review_escalated: bool = False
    operator_decision: OperatorDecision | None = None
    mandatory_listing_exempted: bool = False
    mandatory_listing_triggered: bool = False
    overdue_instalments: list[int] = Field(default_factory=list)
    # The running proof of concept's application, as its child reported it (None: not yet, or a
    # child from before it reported), and what of it is already recorded ("funded",
    # "overdue/<milestone id>"), so that its end records nothing twice.
    poc_application_number: str | None = None
    poc_granted_amount: Money | None = None
    poc_recorded: list[str] = Field(default_factory=list)
    # Deals refused here that the exchange has still to be told of (the stage tells it).
    deals_to_reject: list[DealRejection] = Field(default_factory=list)
    # Listings of this round are the current ones; re-listings so far in this transaction.
    listing_round: int = 0
    relisted: int = 0
    # When every listing of the round had closed without a deal (expired), if it has.
    listings_lapsed_at: AwareDatetime | None = None
    # External event ids already applied: a redelivered webhook has no second effect.
    seen_event_ids: list[str] = Field(default_factory=list)
    # The last external events not applied, with their reasons (each is also an event).
    refused: list[RefusedEvent] = Field(default_factory=list)
    # Incubator events that came before the company: applied once it is founded.
    held_incubator_events: list[HeldIncubatorEvent] = Field(default_factory=list)
    # Events decided but not yet appended to PostgreSQL; carried across continue-as-new.
    outbox: list[LifecycleEvent] = Field(default_factory=list)
    events_recorded: int = 0
    # Plan item 6: the evaluation institution that evaluates instead of the panel (None: the
    # panel), the registry's receipt of the current request, and the report it relayed.
    evaluator: str | None = None
    evaluation_request: EvaluationRequested | None = None
    institution_report: InstitutionReport | None = None
    # A report that overtook the request's receipt: checked against it once it is in.
    held_report: InstitutionReport | None = None
    # Payments (their event ids) whose fund share the institution's transfer fund was sent.
    fund_accrued: list[str] = Field(default_factory=list)

    def stage_since(self) -> datetime | None:
        return self.timeline[-1].entered_at if self.timeline else None


class LifecycleResult(BaseModel):
    """What a finished lifecycle returns: a summary of the whole life."""

    model_config = ConfigDict(frozen=True)

    achievement_id: str
    final_stage: Stage
    registration_number: str | None
    route: str | None
    contract_certificate: str | None
    total_received: str
    team_reward_paid: str
    company: str | None
    report_number: str | None
    reason: str | None
    stages: list[StageEntry]


LifecycleInput.model_rebuild()
