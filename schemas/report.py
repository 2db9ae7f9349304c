"""The annual report on achievement transformation, per institution and year (Safeguard 4).

Six parts, as in China's annual report: achievements; transfers, licences and equity
investments; contracts by type; cash actually received and its distribution; rewards and people
rewarded; companies created and equity held. Shanghai's plan adds mandatory listings made and
exempted and proof-of-concept grants. Every figure is derived from recorded lifecycle
events only, so it can be checked against the sums of the underlying payloads to the cent.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.jurisdiction import DEFAULT_JURISDICTION, JURISDICTIONS
from schemas.money import Money
from schemas.report_deals import DealsAndEquityFigures
from schemas.report_fund import FundYear

# The years a report can be built for: one range for the workflow, the gateway and the CLI.
FIRST_YEAR, LAST_YEAR = 2000, 2100

ZERO = Decimal("0.00")

# Stages in funnel order: how far the achievements of an institution got during the year.
FUNNEL_STAGES = (
    "disclosure",
    "evaluation",
    "proof_of_concept",
    "transaction",
    "incubation",
    "reporting",
    "completed",
)
CONTRACT_TYPES = ("development", "transfer", "licence", "consulting", "service")

# A year's books close on 10 January of the next year, at midnight in the jurisdiction's zone;
# the Schedule files the report two hours later. An event dated in the year and recorded before
# the close counts in the year's report; one recorded later is a correction in the report of the
# year it was recorded in, so a filed year never changes (docs/architecture.md).
BOOKS_CLOSE_MONTH, BOOKS_CLOSE_DAY = 1, 10


def report_zone(jurisdiction: str = DEFAULT_JURISDICTION) -> ZoneInfo:
    """The zone of the jurisdiction's reporting years (China Standard Time for CN, CN-SH)."""
    return ZoneInfo(JURISDICTIONS[jurisdiction].time_zone)


def books_close(year: int, zone: ZoneInfo) -> datetime:
    """When the year's figures are final: later events dated in it are next year's corrections."""
    return datetime(year + 1, BOOKS_CLOSE_MONTH, BOOKS_CLOSE_DAY, tzinfo=zone)


def year_bounds(year: int, jurisdiction: str = DEFAULT_JURISDICTION) -> tuple[datetime, datetime]:
    """The year on the jurisdiction's calendar: midnight of 1 January there, to the next."""
    zone = report_zone(jurisdiction)
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


def previous_year(now: datetime, zone: ZoneInfo) -> int:
    """The year before `now` on the jurisdiction's calendar (not UTC's)."""
    return now.astimezone(zone).year - 1


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CountAmount(_Part):
    count: int = Field(default=0, ge=0)
    amount: Money = ZERO


class AchievementsPart(_Part):
    """Achievements disclosed in the year, by technology field and by funding source."""

    disclosed: int = Field(ge=0)
    by_field: dict[str, int]
    # One achievement may have several funding kinds, so these counts may sum to more.
    by_funding_kind: dict[str, int]
    # Who owns them (item 3): institution, researcher_owned, joint, long_term_use; "unknown"
    # for a disclosed event recorded without it.
    by_ownership: dict[str, int] = Field(default_factory=dict)
    # IP assets listed at disclosure, by kind (schemas/disclosure.py IPAssetKind): one per asset,
    # so an achievement with two patents counts two. "unrecorded": disclosed events recorded
    # before the kinds were (counted once per event).
    by_ip_kind: dict[str, int] = Field(default_factory=dict)


class DealsPart(_Part):
    """Transfers and licences are registered technology contracts; equity is registered equity.

    An equity investment's amount is the value of the equity held: valuation x share, to the cent.
    """

    transfers: CountAmount
    licences: CountAmount
    equity_investments: CountAmount


class ContractsPart(_Part):
    """Registered technology contracts by type (contract value, not cash)."""

    by_type: dict[str, CountAmount]
    total: CountAmount
    verified_total: Money
    # Contracts the registry found eligible for the tax preference, with their contract value.
    tax_preference_eligible: CountAmount = CountAmount()


class IncomePart(_Part):
    """Cash actually received in the year (payment_received events), and how it was split."""

    payments: int = Field(ge=0)
    cash_received: Money
    costs: Money
    net_income: Money
    team_reward: Money
    tto_fund: Money
    institution: Money
    by_month: list[Money] = Field(min_length=12, max_length=12)
    # The team's own part as (co-)owner or holder of a right of use (item 3): not a reward, so
    # net_income = team_owner_income + team_reward + tto_fund + institution.
    team_owner_income: Money = ZERO
    # Brokers' service fees taken from the payments before the split (plan items 6 and 7), so
    # cash_received = costs + service_fees + net_income.
    service_fees: Money = ZERO


class RewardsPart(_Part):
    rewards_paid: Money
    teams_rewarded: int = Field(ge=0, description="Achievements whose team got a reward")
    people_rewarded: int | None = Field(
        description="Distinct inventors of those achievements; None when a disclosed event "
        "does not carry its inventors (lifecycles disclosed before they were recorded)"
    )


class CompaniesPart(_Part):
    companies_created: int = Field(ge=0)
    equity_registered: int = Field(ge=0)
    state_owned_equity: int = Field(ge=0, description="Under categorized management (item 2)")
    # The institution's own part: equity registered for the research team (item 3) is not held.
    equity_held: Money


class ListingsPart(_Part):
    """Mandatory listing (plan item 8): achievements listed because the municipal deadline
    passed untransformed, and those exempted from it with a justification."""

    mandatory_triggered: int = Field(default=0, ge=0)
    mandatory_exempted: int = Field(default=0, ge=0)


class PocPart(_Part):
    """Proof-of-concept grants funded in the year (poc_funded events) and the amount granted."""

    grants: int = Field(default=0, ge=0)
    granted_amount: Money = ZERO


class Correction(_Part):
    """Events dated in an earlier year but recorded after that year's books closed.

    That year's report stays as filed; what arrived late is reported here, in the report of the
    year it was recorded in, with the year it belongs to.
    """

    year: int = Field(ge=FIRST_YEAR, le=LAST_YEAR, description="The year the events belong to")
    events: int = Field(ge=0)
    disclosed: int = Field(ge=0)
    contracts: CountAmount
    payments: int = Field(ge=0)
    cash_received: Money
    costs: Money
    net_income: Money
    team_reward: Money
    tto_fund: Money
    institution: Money
    companies_created: int = Field(ge=0)
    equity_registered: int = Field(ge=0)
    equity_held: Money


class InstitutionAnnualReport(_Part):
    """Every figure but `generated_at` is a function of the recorded events: rebuilding a closed
    year's report gives the same report, `generated_at` aside."""

    institution_code: str
    year: int = Field(ge=FIRST_YEAR, le=LAST_YEAR)
    generated_at: AwareDatetime
    time_zone: str = Field(
        default="Asia/Shanghai", description="The zone of the year's bounds and its months"
    )
    closes_at: AwareDatetime | None = Field(
        default=None,
        description="Events dated in the year and recorded from then on are corrections in "
        "the next year's report",
    )
    events_in_year: int = Field(ge=0)
    achievements: AchievementsPart
    deals: DealsPart
    contracts: ContractsPart
    income: IncomePart
    rewards: RewardsPart
    companies: CompaniesPart
    # Defaults: a report built before these parts (an activity result in a recorded history).
    listings: ListingsPart = ListingsPart()
    poc: PocPart = PocPart()
    funnel: dict[str, int] = Field(description="Achievements entering each stage in the year")
    # None: a report built before these parts (docs/architecture.md "Reading and reporting").
    brokered: DealsAndEquityFigures | None = Field(
        default=None,
        description="Deals brokered by transfer institutions and technology managers, their "
        "fees, and the equity registered for research teams",
    )
    fund: FundYear | None = Field(
        default=None, description="The technology transfer fund's year, from its ledger"
    )
    corrections: list[Correction] = Field(
        default_factory=list,
        description="Earlier years' events recorded after those years closed, by year",
    )


class AnnualReportInput(_Part):
    year: int | None = Field(
        default=None,
        ge=2000,
        le=2100,
        description="None: the year before the start time, on the jurisdiction's calendar",
    )
    institution_code: str | None = Field(default=None, description="None: every institution")
    jurisdiction: str = Field(
        default=DEFAULT_JURISDICTION, description="Whose calendar the year runs on"
    )

    @field_validator("jurisdiction")
    @classmethod
    def _known_jurisdiction(cls, value: str) -> str:
        if value not in JURISDICTIONS:
            raise ValueError(f"unknown jurisdiction {value!r}; known: {', '.join(JURISDICTIONS)}")
        return value


class SubmittedReport(_Part):
    institution_code: str
    receipt_number: str
    cash_received: Money


class AnnualReportResult(_Part):
    year: int
    submitted: list[SubmittedReport]
