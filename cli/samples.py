"""Synthetic achievements for the demo and the tests: varied, realistic, clearly labelled.

Institution codes start with SYN- (the policy book gives them accelerated clocks) and every
disclosure carries synthetic=True, so nothing here can be mistaken for a real record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from schemas.disclosure import (
    Confidentiality,
    Disclosure,
    FundingKind,
    FundingSource,
    Institution,
    InstitutionKind,
    Inventor,
    IPAsset,
    IPAssetKind,
    IPStatus,
    Ownership,
    OwnershipKind,
    TechnologyField,
    TransformationMode,
)
from schemas.evaluation import Recommendation, Review
from schemas.evaluation_institution import EvaluatedBy, EvaluationChoice
from schemas.gateway_api import DisclosureRequest
from schemas.lifecycle import LifecycleInput
from schemas.money import to_cents
from schemas.policy import Policy
from schemas.transaction import (
    Brokerage,
    ContractType,
    PricingMethod,
    TechnologyManager,
    TransferInstitution,
)

# The synthetic experts of the demo's identity provider (sandboxes/identity_directory.py): a
# reviewer id is the expert's token subject, so panels are drawn from people who can log in.
DEMO_EXPERTS = [f"expert.syn-{k:02d}" for k in range(1, 7)]

INSTITUTIONS = [
    Institution(
        code="SYN-UNIV-A",
        name="Synthetic University A (demo)",
        kind=InstitutionKind.UNIVERSITY,
        state_owned=True,
    ),
    Institution(
        code="SYN-INST-B",
        name="Synthetic Research Institute B (demo)",
        kind=InstitutionKind.RESEARCH_INSTITUTE,
        state_owned=True,
    ),
    Institution(
        code="SYN-HOSP-C",
        name="Synthetic Hospital C (demo)",
        kind=InstitutionKind.MEDICAL,
        state_owned=True,
    ),
    Institution(
        code="SYN-SOE-D",
        name="Synthetic State-owned Enterprise D (demo)",
        kind=InstitutionKind.ENTERPRISE,
        state_owned=True,
    ),
    Institution(
        code="SYN-CORP-E",
        name="Synthetic Private Company E (demo)",
        kind=InstitutionKind.ENTERPRISE,
        state_owned=False,
    ),
]

TITLES = {
    TechnologyField.INTEGRATED_CIRCUITS: "Low-leakage 3D NAND gate stack",
    TechnologyField.BIOMEDICINE: "Bispecific antibody for solid tumours",
    TechnologyField.ARTIFICIAL_INTELLIGENCE: "Federated learning for hospital imaging",
    TechnologyField.ADVANCED_MATERIALS: "Graphene-reinforced aluminium alloy",
    TechnologyField.NEW_ENERGY: "Solid-state electrolyte for fast charging",
    TechnologyField.ADVANCED_MANUFACTURING: "Adaptive laser welding controller",
    TechnologyField.AGRICULTURE: "Salt-tolerant rice variety",
}

MODE_MIXES = [
    [TransformationMode.TRANSFER],
    [TransformationMode.LICENCE],
    [TransformationMode.TRANSFER, TransformationMode.EQUITY_INVESTMENT],
    [TransformationMode.COOPERATIVE_IMPLEMENTATION],
    [TransformationMode.EQUITY_INVESTMENT],
    [],  # no clear intention: held as a scientific resource, then activated
]

# Who brokers the demo's deals (plan items 6 and 7): every other deal has a transfer
# institution and its technology manager, whose fee is a share of the deal's amount.
TRANSFER_INSTITUTIONS = [
    TransferInstitution(code="SYN-TTI-1", name="Synthetic Technology Transfer Centre (demo)"),
    TransferInstitution(code="SYN-TTI-2", name="Synthetic IP Operations Co (demo)"),
]
TECHNOLOGY_MANAGERS = [
    TechnologyManager(name="Zhou Synthetic (demo)", certificate_number="SYN-TM-0001"),
    TechnologyManager(name="Wu Synthetic (demo)", certificate_number="SYN-TM-0002"),
]
SERVICE_FEE_RATE = Decimal("0.03")

SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu"]


@dataclass(frozen=True)
class Scenario:
    """How the demo plays the people and systems around one achievement."""

    disclosure: Disclosure
    reviewers: list[str]
    exchanges: list[str]
    asking_price: Decimal
    pricing: PricingMethod
    needs_poc: bool
    activate_with: list[TransformationMode] = field(default_factory=list)
    deal_amount: Decimal = Decimal("0")
    contract_type: ContractType = ContractType.TRANSFER
    instalments: int = 1
    # Plan item 6: the evaluation institution that evaluates instead of the panel, if any.
    evaluated_by: str | None = None
    brokerage: Brokerage | None = None

    @property
    def evaluation(self) -> EvaluationChoice | None:
        if self.evaluated_by is None:
            return None
        return EvaluationChoice(by=EvaluatedBy.INSTITUTION, institution=self.evaluated_by)

    def lifecycle_input(self, policy: Policy) -> LifecycleInput:
        """How this achievement starts when the tests and benchmarks start it directly (the
        gateway builds the same input from a disclosure request and the caller's token)."""
        return LifecycleInput(
            disclosure=self.disclosure,
            policy=policy,
            disclosed_at=datetime.now(UTC),
            reviewers=self.reviewers,
            exchanges=self.exchanges,
            asking_price=self.asking_price,
            pricing=self.pricing,
            evaluation=self.evaluation,
        )

    def disclosure_request(self) -> DisclosureRequest:
        """What the institution's officer sends to `POST /achievements` for this achievement."""
        return DisclosureRequest(
            disclosure=self.disclosure,
            reviewers=self.reviewers,
            exchanges=self.exchanges,
            asking_price=self.asking_price,
            pricing=self.pricing,
            evaluation=self.evaluation,
        )

    def reviews(self) -> list[Review]:
        # Mean >= 3.5 routes a TRL>=6 achievement to the market; 2.5-3.5 to proof of concept.
        high, mid = (4, 4, 4, 3), (3, 2, 3, 3)
        scores = mid if self.needs_poc else high
        rec = Recommendation.PROOF_OF_CONCEPT if self.needs_poc else Recommendation.TRANSACTION
        return [
            Review(
                reviewer_id=r,
                novelty=scores[0],
                maturity=scores[1],
                market=scores[2],
                ip_strength=scores[3],
                recommendation=rec,
                comment="synthetic review",
            )
            for r in self.reviewers
        ]


def _inventors(rng: random.Random) -> list[Inventor]:
    n = rng.randint(1, 4)
    names = rng.sample(SURNAMES, n)
    shares = [Decimal(100 // n)] * n
    shares[0] += Decimal(100) - sum(shares)
    return [
        Inventor(name=f"{name} (synthetic)", share=s) for name, s in zip(names, shares, strict=True)
    ]


def scenario(index: int, run_tag: str, today: date, seed: int = 7) -> Scenario:
    rng = random.Random(f"{seed}-{index}")
    institution = INSTITUTIONS[index % len(INSTITUTIONS)]
    tech = list(TITLES)[index % len(TITLES)]
    modes = MODE_MIXES[index % len(MODE_MIXES)]
    needs_poc = index % 3 == 1
    municipal = index % 2 == 0
    funding = [
        FundingSource(
            kind=FundingKind.MUNICIPAL_FINANCE,
            project_code=f"SH-{20210000 + index}",
            transformation_deadline=today + timedelta(days=3 * 365),
        )
        if municipal
        else FundingSource(kind=FundingKind.NATIONAL_FINANCE, project_code=f"NSFC-{index:05d}"),
    ]
    if index % 4 == 3:
        funding.append(FundingSource(kind=FundingKind.ENTERPRISE, project_code=f"ENT-{index:04d}"))
    ownership = [
        Ownership(kind=OwnershipKind.INSTITUTION),
        Ownership(kind=OwnershipKind.RESEARCHER_OWNED),
        Ownership(kind=OwnershipKind.LONG_TERM_USE, years=10),
    ][index % 3]
    price = Decimal(rng.randrange(200_000, 5_000_000)) + Decimal(rng.randrange(0, 100)) / 100
    disclosure = Disclosure(
        achievement_id=f"SYN-{run_tag}-{index:04d}",
        title=f"{TITLES[tech]} (synthetic #{index})",
        summary="Synthetic demonstration record: not a real achievement. " * 2,
        institution=institution,
        inventors=_inventors(rng),
        field=tech,
        trl=rng.randint(3, 5) if needs_poc else rng.randint(6, 8),
        ip_assets=[
            IPAsset(kind=IPAssetKind.PATENT, number=f"ZL2023{index:07d}.X", status=IPStatus.GRANTED)
        ],
        funding=funding,
        ownership=ownership,
        confidentiality=Confidentiality.INTERNAL,
        intended_modes=modes,
        synthetic=True,
    )
    exchanges = ["sstec", "jstec"] if index % 4 == 0 else ["sstec"]
    contract = {
        TransformationMode.LICENCE: ContractType.LICENCE,
        TransformationMode.COOPERATIVE_IMPLEMENTATION: ContractType.DEVELOPMENT,
    }
    effective = modes or [TransformationMode.TRANSFER, TransformationMode.EQUITY_INVESTMENT]
    deal_amount = price + Decimal("12345.67")
    brokerage = (
        Brokerage(
            transfer_institution=TRANSFER_INSTITUTIONS[index // 2 % len(TRANSFER_INSTITUTIONS)],
            technology_manager=TECHNOLOGY_MANAGERS[index // 2 % len(TECHNOLOGY_MANAGERS)],
            service_fee=to_cents(deal_amount * SERVICE_FEE_RATE),
        )
        if index % 2 == 0
        else None
    )
    return Scenario(
        disclosure=disclosure,
        reviewers=[DEMO_EXPERTS[(index + k) % len(DEMO_EXPERTS)] for k in range(3)],
        exchanges=exchanges,
        asking_price=price,
        pricing=[PricingMethod.AGREEMENT, PricingMethod.AUCTION, PricingMethod.BIDDING][index % 3],
        needs_poc=needs_poc,
        activate_with=[] if modes else effective,
        deal_amount=deal_amount,
        contract_type=contract.get(effective[0], ContractType.TRANSFER),
        instalments=1 + index % 3,
        brokerage=brokerage,
    )
