"""The annual report on achievement transformation, per institution and year (Safeguard 4).

Six parts, as in China's annual report: achievements; transfers, licences and equity
investments; contracts by type; cash actually received and its distribution; rewards and people
rewarded; companies created and equity held. Every figure is derived from recorded lifecycle
events only, so it can be checked against the sums of the underlying payloads to the cent.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.money import Money

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


class InstitutionAnnualReport(_Part):
    institution_code: str
    year: int = Field(ge=FIRST_YEAR, le=LAST_YEAR)
    generated_at: AwareDatetime
    events_in_year: int = Field(ge=0)
    achievements: AchievementsPart
    deals: DealsPart
    contracts: ContractsPart
    income: IncomePart
    rewards: RewardsPart
    companies: CompaniesPart
    funnel: dict[str, int] = Field(description="Achievements entering each stage in the year")


class AnnualReportInput(_Part):
    year: int | None = Field(
        default=None, ge=2000, le=2100, description="None: the year before the start time"
    )
    institution_code: str | None = Field(default=None, description="None: every institution")


class SubmittedReport(_Part):
    institution_code: str
    receipt_number: str
    cash_received: Money


class AnnualReportResult(_Part):
    year: int
    submitted: list[SubmittedReport]
