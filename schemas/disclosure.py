"""What an institution discloses about an achievement (plan item 3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.money import Percent
from schemas.text import Line, Text

ACHIEVEMENT_ID_PATTERN = r"^[A-Z0-9][A-Z0-9-]{2,62}$"
AchievementId = Annotated[str, Field(pattern=ACHIEVEMENT_ID_PATTERN)]


class InstitutionKind(StrEnum):
    UNIVERSITY = "university"
    RESEARCH_INSTITUTE = "research_institute"
    MEDICAL = "medical"
    ENTERPRISE = "enterprise"


class Institution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")
    name: Line = Field(min_length=2, max_length=200)
    kind: InstitutionKind
    state_owned: bool


class Inventor(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Line = Field(min_length=1, max_length=100)
    share: Percent


class TechnologyField(StrEnum):
    INTEGRATED_CIRCUITS = "integrated_circuits"
    BIOMEDICINE = "biomedicine"
    ARTIFICIAL_INTELLIGENCE = "artificial_intelligence"
    ADVANCED_MATERIALS = "advanced_materials"
    NEW_ENERGY = "new_energy"
    ADVANCED_MANUFACTURING = "advanced_manufacturing"
    INFORMATION_TECHNOLOGY = "information_technology"
    AGRICULTURE = "agriculture"
    ENVIRONMENT = "environment"
    OTHER = "other"


class IPAssetKind(StrEnum):
    PATENT = "patent"
    SOFTWARE_COPYRIGHT = "software_copyright"
    IC_LAYOUT = "ic_layout"
    PLANT_VARIETY = "plant_variety"
    TECHNICAL_SECRET = "technical_secret"


class IPStatus(StrEnum):
    FILED = "filed"
    GRANTED = "granted"
    REGISTERED = "registered"
    UNREGISTERED = "unregistered"  # technical secrets are protected, not registered
    EXPIRED = "expired"


class IPAsset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: IPAssetKind
    number: Line | None = Field(default=None, max_length=64)
    status: IPStatus

    @model_validator(mode="after")
    def _number_when_registered(self) -> IPAsset:
        if self.kind is not IPAssetKind.TECHNICAL_SECRET and not self.number:
            raise ValueError(f"number is required for a {self.kind.value}")
        return self


class FundingKind(StrEnum):
    MUNICIPAL_FINANCE = "municipal_finance"
    NATIONAL_FINANCE = "national_finance"
    ENTERPRISE = "enterprise"
    SELF = "self"


class FundingSource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FundingKind
    project_code: Line | None = Field(default=None, max_length=64)
    transformation_deadline: date | None = None

    @model_validator(mode="after")
    def _public_money_terms(self) -> FundingSource:
        public = self.kind in (FundingKind.MUNICIPAL_FINANCE, FundingKind.NATIONAL_FINANCE)
        if public and not self.project_code:
            raise ValueError("project_code is required for fiscal funding")
        if self.kind is FundingKind.MUNICIPAL_FINANCE and self.transformation_deadline is None:
            raise ValueError("transformation_deadline is required for municipal finance (item 8)")
        return self


class OwnershipKind(StrEnum):
    """Who owns the achievement (item 3: the pilot granting researchers ownership or a
    long-term right of use of job-related achievements)."""

    INSTITUTION = "institution"
    RESEARCHER_OWNED = "researcher_owned"  # the team owns it whole
    JOINT = "joint"  # the institution and the team own it in shares
    LONG_TERM_USE = "long_term_use"  # the institution owns it; the team holds a right of use


HUNDRED = Decimal("100")


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year + years, day=28)


class Ownership(BaseModel):
    """Ownership decides who the net income and the technology equity belong to.

    `institution_share` is the institution's part, in per cent: its ownership share (joint), or
    the licence share of the net income the team owes it while it holds a long-term right of
    use (none agreed: the income is the institution's, as if it held the achievement alone).
    The rest is the team's own. Fields added after `kind` and `years` default, so disclosures
    recorded before them still load.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: OwnershipKind
    years: int | None = Field(default=None, ge=1, le=50)
    institution_share: Percent | None = Field(
        default=None,
        description="Per cent of the net income and equity that is the institution's: its "
        "share of a joint ownership, or the licence share owed during a long-term right of use",
    )
    granted_on: date | None = Field(
        default=None,
        description="When the long-term right of use was granted; none: from the disclosure",
    )

    @model_validator(mode="after")
    def _years_only_for_right_of_use(self) -> Ownership:
        if self.kind is OwnershipKind.LONG_TERM_USE and self.years is None:
            raise ValueError("years is required for a long-term right of use")
        if self.kind is not OwnershipKind.LONG_TERM_USE and self.years is not None:
            raise ValueError("years applies only to a long-term right of use")
        if self.kind is not OwnershipKind.LONG_TERM_USE and self.granted_on is not None:
            raise ValueError("granted_on applies only to a long-term right of use")
        if self.kind is OwnershipKind.JOINT and (
            self.institution_share is None or self.institution_share >= HUNDRED
        ):
            raise ValueError("institution_share below 100 is required for a joint ownership")
        if (
            self.kind in (OwnershipKind.INSTITUTION, OwnershipKind.RESEARCHER_OWNED)
            and self.institution_share is not None
        ):
            raise ValueError(f"institution_share does not apply to {self.kind.value} ownership")
        return self

    def right_of_use_ends(self, disclosed_on: date) -> date | None:
        """The first day the right of use no longer runs, or None without one."""
        if self.kind is not OwnershipKind.LONG_TERM_USE or self.years is None:
            return None
        return _add_years(self.granted_on or disclosed_on, self.years)

    def institution_part(self, on: date, disclosed_on: date) -> Decimal:
        """The institution's part (0 to 1) of what the achievement earns on a day; the team's
        own part is the rest. A right of use that has run out leaves it all to the owner."""
        if self.kind is OwnershipKind.RESEARCHER_OWNED:
            return Decimal(0)
        if self.kind is OwnershipKind.JOINT and self.institution_share is not None:
            return self.institution_share / HUNDRED
        ends = self.right_of_use_ends(disclosed_on)
        if ends is not None and on < ends and self.institution_share is not None:
            return self.institution_share / HUNDRED
        return Decimal(1)


class Confidentiality(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"


class TransformationMode(StrEnum):
    """The five statutory modes of transformation."""

    SELF_IMPLEMENTATION = "self_implementation"
    TRANSFER = "transfer"
    LICENCE = "licence"
    COOPERATIVE_IMPLEMENTATION = "cooperative_implementation"
    EQUITY_INVESTMENT = "equity_investment"


class Disclosure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    achievement_id: AchievementId
    title: Line = Field(min_length=3, max_length=300)
    summary: Text = Field(min_length=10, max_length=10_000)
    institution: Institution
    inventors: list[Inventor] = Field(min_length=1, max_length=100)
    field: TechnologyField
    trl: int = Field(ge=1, le=9, description="Technology readiness level, 1-9")
    ip_assets: list[IPAsset] = Field(default_factory=list, max_length=200)
    funding: list[FundingSource] = Field(min_length=1, max_length=20)
    ownership: Ownership
    confidentiality: Confidentiality
    intended_modes: list[TransformationMode] = Field(default_factory=list, max_length=5)
    synthetic: bool = Field(default=False, description="True for demo and test data")

    @field_validator("inventors")
    @classmethod
    def _shares_make_a_whole(cls, inventors: list[Inventor]) -> list[Inventor]:
        total = sum((i.share for i in inventors), Decimal("0"))
        if total != Decimal("100"):
            raise ValueError(f"inventor shares must sum to exactly 100, got {total}")
        names = [i.name for i in inventors]
        if len(set(names)) != len(names):
            raise ValueError("inventor names must be unique")
        return inventors

    @field_validator("intended_modes")
    @classmethod
    def _modes_unique(cls, modes: list[TransformationMode]) -> list[TransformationMode]:
        if len(set(modes)) != len(modes):
            raise ValueError("intended modes must not repeat")
        return modes

    @property
    def municipal_deadline(self) -> date | None:
        """The earliest agreed transformation deadline of municipal funding, if any."""
        deadlines = [
            f.transformation_deadline
            for f in self.funding
            if f.kind is FundingKind.MUNICIPAL_FINANCE and f.transformation_deadline
        ]
        return min(deadlines) if deadlines else None
