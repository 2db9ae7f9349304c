"""A generated multi-year data set of lifecycle events, with the payloads the lifecycle workflow
emits (workflows/lifecycle.py), recorded through the real projection activity.

The generator keeps every event in memory, so tests can compute the expected figures
independently of the SQL under test: which report an event belongs to is worked out here from
the payload, in Python, not with the code under test.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.testing import ActivityEnvironment

from activities.projections import ProjectionActivities
from activities.reports import build_institution_report
from schemas.disclosure import FundingKind, IPAssetKind, TechnologyField, TransformationMode
from schemas.events import EventType, LifecycleEvent
from schemas.incubation import CompanyFounded
from schemas.money import CENT
from schemas.policy import DEFAULT_POLICY, Policy
from schemas.report import InstitutionAnnualReport
from schemas.transaction import ContractRegistration, ContractType, Distribution, Payment
from schemas.views import AchievementView
from workflows.ids import workflow_id

POLICIES = [
    Policy(institution_code="*", version="gen-1"),
    Policy(
        institution_code="*",
        version="gen-2",
        team_reward_minimum=Decimal("0.70"),
        team_reward_rate=Decimal("0.75"),
        tto_fund_rate=Decimal("0.05"),
    ),
]
CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Ownership in turn (not drawn, so the other figures keep their seed): (kind in the disclosed
# event, the institution's part). None: a disclosed event recorded before ownership was.
OWNERSHIPS: list[tuple[str | None, Decimal]] = [
    ("institution", Decimal(1)),
    ("researcher_owned", Decimal(0)),
    ("joint", Decimal("0.3")),
    ("long_term_use", Decimal("0.25")),
    (None, Decimal(1)),
]

# Shanghai's reporting calendar: China Standard Time, books closing on 10 January.
SHANGHAI = ZoneInfo("Asia/Shanghai")
_BUSINESS_DATE = {
    EventType.PAYMENT_RECEIVED: "paid_at",
    EventType.CONTRACT_REGISTERED: "registered_at",
    EventType.COMPANY_FOUNDED: "founded_at",
}


def business_at(e: LifecycleEvent) -> datetime:
    """When it happened in business terms, on Shanghai's calendar."""
    key = _BUSINESS_DATE.get(e.type)
    at = datetime.fromisoformat(e.payload[key]) if key else e.occurred_at
    return at.astimezone(SHANGHAI)


def closes(year: int) -> datetime:
    return datetime(year + 1, 1, 10, tzinfo=SHANGHAI)


def in_year(e: LifecycleEvent, year: int) -> bool:
    """In the year's own figures: dated in it, recorded before its books closed."""
    return business_at(e).year == year and e.occurred_at < closes(year)


def late_in(e: LifecycleEvent, year: int) -> int | None:
    """The earlier year whose correction this event is in the year's report, if any."""
    dated = business_at(e).year
    if dated < year and closes(year - 1) <= e.occurred_at < closes(year):
        return dated
    return None


@dataclass
class Achievement:
    achievement_id: str
    institution: str
    field: str
    modes: list[str]
    funding: list[str]
    mandatory_due: date | None
    stage: str = "disclosure"
    waiting_until: datetime | None = None


@dataclass
class DataSet:
    institutions: list[str]
    years: list[int]
    achievements: list[Achievement] = field(default_factory=list)
    events: list[LifecycleEvent] = field(default_factory=list)
    views: dict[str, AchievementView] = field(default_factory=dict)

    def of(
        self, institution: str, year: int, type: EventType | None = None
    ) -> list[LifecycleEvent]:
        """The events of the year's own figures (type None: of every type)."""
        return [
            e
            for e in self.events
            if e.institution_code == institution
            and in_year(e, year)
            and (type is None or e.type is type)
        ]

    def late(self, institution: str, year: int) -> dict[int, list[LifecycleEvent]]:
        """The corrections of the year's report: late events by the year they belong to."""
        by_year: dict[int, list[LifecycleEvent]] = {}
        for e in self.events:
            dated = late_in(e, year) if e.institution_code == institution else None
            if dated is not None:
                by_year.setdefault(dated, []).append(e)
        return by_year


def _moment(rng: random.Random, year: int) -> datetime:
    start = datetime(year, 1, 1, tzinfo=UTC)
    return start + timedelta(seconds=rng.randrange(365 * 86400))


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randrange(low * 100, high * 100)) / 100


def generate(years: list[int], institutions: int = 3, per_year: int = 8, seed: int = 5) -> DataSet:
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6].upper()
    ds = DataSet(institutions=[f"G{tag}-{i}" for i in range(institutions)], years=years)
    now = datetime.now(UTC)
    for inst in ds.institutions:
        for year in years:
            for n in range(per_year):
                _lifecycle(ds, rng, inst, year, f"{inst}-{year}-{n:02d}", now)
    return ds


def _lifecycle(
    ds: DataSet, rng: random.Random, inst: str, year: int, aid: str, now: datetime
) -> None:
    funding = sorted(
        rng.sample([k.value for k in FundingKind], rng.randint(1, 2)),
    )
    a = Achievement(
        achievement_id=aid,
        institution=inst,
        field=rng.choice([f.value for f in TechnologyField][:5]),
        modes=sorted(rng.sample([m.value for m in TransformationMode], rng.randint(1, 2))),
        funding=funding,
        mandatory_due=date(year + 3, rng.randint(1, 12), 15)
        if FundingKind.MUNICIPAL_FINANCE.value in funding
        else None,
    )
    ds.achievements.append(a)
    policy = rng.choice(POLICIES)
    ownership, owned_by_institution = OWNERSHIPS[len(ds.achievements) % len(OWNERSHIPS)]
    t = _moment(rng, year)
    # Draws added later come from a generator of their own, so the figures above keep their seed.
    extra = random.Random(f"{aid}/extra")
    # IP assets by kind, with repeats (two patents); none at all sometimes. A disclosed event
    # recorded before ownership was carries no kinds either.
    ip_kinds = sorted(extra.choices([k.value for k in IPAssetKind], k=extra.randint(0, 3)))

    def emit(
        type: EventType,
        payload: dict[str, Any],
        source: str = "workflow",
        delivered: datetime | None = None,
    ) -> None:
        ds.events.append(
            LifecycleEvent(
                event_id=str(uuid.uuid4()),
                achievement_id=aid,
                workflow_id=workflow_id(aid),
                institution_code=inst,
                type=type,
                stage=a.stage,
                occurred_at=delivered or t,
                source=source,
                payload=payload,
            )
        )
        ds.views[aid] = AchievementView(
            achievement_id=aid,
            workflow_id=workflow_id(aid),
            institution_code=inst,
            title=f"Generated achievement {aid}",
            field=a.field,
            stage=a.stage,
            modes=a.modes,
            funding_kinds=a.funding,
            mandatory_listing_due=a.mandatory_due,
            waiting_on="the next step" if a.waiting_until else None,
            waiting_until=a.waiting_until,
            synthetic=True,
            updated_at=t,
        )

    def enter(stage: str) -> None:
        a.stage = stage
        emit(EventType.STAGE_ENTERED, {"stage": stage, "note": "generated"})

    enter("disclosure")
    emit(
        EventType.DISCLOSED,
        {"title": f"Generated achievement {aid}", "modes": a.modes}
        | ({"ownership": ownership, "ip_kinds": ip_kinds} if ownership else {}),
        f"institution:{inst}",
    )
    t += timedelta(days=rng.randint(1, 20))
    emit(EventType.REGISTERED, {"registration_number": f"REG-{aid}"}, "registry")
    enter("evaluation")
    fate = rng.random()
    if fate < 0.2:
        # Still under review: some past their deadline (overdue), some not.
        overdue = rng.random() < 0.5
        a.waiting_until = now - timedelta(days=3) if overdue else now + timedelta(days=30)
        emit(EventType.REVIEW_REMINDER, {"missing": ["expert-a"]})
        return
    t += timedelta(days=rng.randint(20, 60))
    if a.mandatory_due is not None:
        # Municipal money: the listing deadline passes untransformed, or an approver exempts it.
        outcome = extra.random()
        if outcome < 0.35:
            emit(
                EventType.MANDATORY_LISTING_TRIGGERED,
                {"deadline": str(a.mandatory_due), "from_stage": a.stage},
            )
        elif outcome < 0.6:
            emit(
                EventType.MANDATORY_LISTING_EXEMPTED,
                {"justification": "generated"},
                f"operator:approver.{inst.lower()}",
            )
    if fate < 0.35:
        enter("proof_of_concept")
        if extra.random() < 0.8:
            emit(
                EventType.POC_FUNDED,
                {
                    "application_number": f"POC-{aid}",
                    "granted_amount": str(_money(extra, 50_000, 2_000_000)),
                },
                "registry",
            )
        return
    enter("transaction")
    t += timedelta(days=rng.randint(15, 120))
    kind = rng.choice(list(ContractType))
    amount = _money(rng, 10_000, 3_000_000)
    instalments = rng.randint(1, 4)
    registration = ContractRegistration(
        certificate_number=f"TC-{aid}",
        verified_amount=amount,
        tax_preference_eligible=rng.random() < 0.7,
        registered_at=t,
    )
    emit(
        EventType.CONTRACT_REGISTERED,
        {
            **registration.model_dump(mode="json"),
            "contract_type": kind.value,
            "amount": str(amount),
            "trading_liability_exempt": rng.random() < 0.5,
        },
        "registry",
    )
    # Instalments: the last one takes the remainder, so they sum to the contract amount.
    parts = [(amount / instalments).quantize(Decimal("0.01")) for _ in range(instalments - 1)]
    parts.append(amount - sum(parts, Decimal(0)))
    for i, part in enumerate(parts, start=1):
        t += timedelta(days=rng.randint(30, 200))  # often into the next year: cash, not value
        payment = Payment(
            event_id=f"pay-{aid}-{i}",
            exchange="sstec",
            listing_id=f"L-{aid}",
            instalment=i,
            amount=part,
            costs=min(part, _money(rng, 0, 5_000)),
            paid_at=t,
        )
        distribution = Distribution.of(payment, policy, institution_part=owned_by_institution)
        # Delivered when paid, or days or weeks later: across a year end, and its close.
        delay = timedelta(days=rng.choice([0, 0, 0, 2, 9, 45, 120]), hours=rng.randrange(24))
        emit(
            EventType.PAYMENT_RECEIVED,
            {
                **payment.model_dump(mode="json"),
                "distribution": distribution.model_dump(mode="json"),
            },
            "exchange:sstec",
            delivered=t + delay,
        )
    if {"equity_investment", "self_implementation"} & set(a.modes):
        enter("incubation")
        t += timedelta(days=rng.randint(10, 90))
        company = CompanyFounded(
            event_id=f"co-{aid}",
            company_name=f"Spin-off {aid}",
            credit_code="".join(rng.choice(CREDIT_CHARS) for _ in range(18)),
            equity_share=Decimal(rng.randint(100, 4000)) / 100,
            valuation=_money(rng, 1_000_000, 90_000_000),
            founded_at=t,
        )
        emit(EventType.COMPANY_FOUNDED, company.model_dump(mode="json"), "incubator")
        t += timedelta(days=rng.randint(5, 60))
        state_owned = rng.random() < 0.5
        emit(
            EventType.EQUITY_REGISTERED,
            {
                "equity_certificate": f"EQ-{aid}",
                "state_owned_equity": state_owned,
                "categorized_management": state_owned,
                "equity_share": str(company.equity_share),
                "valuation": str(company.valuation),
            }
            | (
                {
                    "team_equity_share": str(
                        (company.equity_share * (1 - owned_by_institution)).quantize(CENT)
                    )
                }
                if owned_by_institution != 1
                else {}
            ),
            "registry",
        )
    enter("reporting")
    enter("completed")
    emit(EventType.COMPLETED, {})


async def record(pool: asyncpg.Pool, events: list[LifecycleEvent], views: DataSet) -> None:
    """Record through the real activity; achievements in parallel, each one's events in order."""
    activities = ProjectionActivities(pool)
    by_achievement: dict[str, list[LifecycleEvent]] = {}
    for e in events:
        by_achievement.setdefault(e.achievement_id, []).append(e)
    # The view stored with each event is the final one: the row ends as the generator left it.
    final = views.views

    async def one(chain: list[LifecycleEvent]) -> None:
        env = ActivityEnvironment()
        for e in chain:
            await env.run(activities.record_event, e, final[e.achievement_id])

    await asyncio.gather(*(one(chain) for chain in by_achievement.values()))


# Independent SQL over the raw events, written apart from activities/reports.py: no business_at
# column, the year and its close spelled out in Shanghai time. $1 institution, $2 year.
_YEAR_OF = "extract(year FROM ({at}) AT TIME ZONE 'Asia/Shanghai') = $2::int"
_RECORDED = "occurred_at < make_timestamptz($2::int + 1, 1, 10, 0, 0, 0, 'Asia/Shanghai')"
_OWN = "institution_code = $1 AND " + _RECORDED
_SQL_FIGURES = {
    "ip_kinds": f"""
        SELECT kind, count(*) AS n FROM (
            SELECT CASE WHEN payload ? 'ip_kinds' THEN k ELSE 'unrecorded' END AS kind
            FROM lifecycle_events
            LEFT JOIN LATERAL jsonb_array_elements_text(payload->'ip_kinds') AS k ON true
            WHERE type = 'disclosed' AND {_OWN} AND {_YEAR_OF.format(at="occurred_at")}
              AND (k IS NOT NULL OR NOT payload ? 'ip_kinds')
        ) s GROUP BY kind""",
    "tax": f"""
        SELECT count(*) AS n, coalesce(sum((payload->>'amount')::numeric), 0) AS amount
        FROM lifecycle_events
        WHERE type = 'contract_registered' AND payload->>'tax_preference_eligible' = 'true'
          AND {_OWN} AND {_YEAR_OF.format(at="(payload->>'registered_at')::timestamptz")}""",
    "poc": f"""
        SELECT count(*) AS n, coalesce(sum((payload->>'granted_amount')::numeric), 0) AS amount
        FROM lifecycle_events
        WHERE type = 'poc_funded' AND {_OWN} AND {_YEAR_OF.format(at="occurred_at")}""",
    # The six parts' money and counts, each by its own business date.
    "payments": f"""
        SELECT count(*) AS n,
            coalesce(sum((payload->>'amount')::numeric), 0) AS cash,
            coalesce(sum((payload->>'costs')::numeric), 0) AS costs,
            coalesce(sum((payload->'distribution'->>'service_fee')::numeric), 0) AS fee,
            coalesce(sum((payload->'distribution'->>'net_income')::numeric), 0) AS net,
            coalesce(sum((payload->'distribution'->>'team_reward')::numeric), 0) AS team,
            coalesce(sum((payload->'distribution'->>'tto_fund')::numeric), 0) AS tto,
            coalesce(sum((payload->'distribution'->>'institution')::numeric), 0) AS inst
        FROM lifecycle_events
        WHERE type = 'payment_received' AND {_OWN}
          AND {_YEAR_OF.format(at="(payload->>'paid_at')::timestamptz")}""",
    "months": f"""
        SELECT extract(month FROM (payload->>'paid_at')::timestamptz
                       AT TIME ZONE 'Asia/Shanghai')::int AS month,
            sum((payload->>'amount')::numeric) AS cash
        FROM lifecycle_events
        WHERE type = 'payment_received' AND {_OWN}
          AND {_YEAR_OF.format(at="(payload->>'paid_at')::timestamptz")}
        GROUP BY 1""",
    "contracts": f"""
        SELECT payload->>'contract_type' AS kind, count(*) AS n,
            sum((payload->>'amount')::numeric) AS amount
        FROM lifecycle_events
        WHERE type = 'contract_registered' AND {_OWN}
          AND {_YEAR_OF.format(at="(payload->>'registered_at')::timestamptz")}
        GROUP BY 1""",
    "companies": f"""
        SELECT count(*) AS n FROM lifecycle_events
        WHERE type = 'company_founded' AND {_OWN}
          AND {_YEAR_OF.format(at="(payload->>'founded_at')::timestamptz")}""",
    "equity": f"""
        SELECT count(*) AS n,
            count(*) FILTER (WHERE payload->>'state_owned_equity' = 'true') AS state_owned
        FROM lifecycle_events
        WHERE type = 'equity_registered' AND {_OWN} AND {_YEAR_OF.format(at="occurred_at")}""",
    "disclosed": f"""
        SELECT count(*) AS n FROM lifecycle_events
        WHERE type = 'disclosed' AND {_OWN} AND {_YEAR_OF.format(at="occurred_at")}""",
    "mandatory": f"""
        SELECT count(*) FILTER (WHERE type = 'mandatory_listing_triggered') AS triggered,
               count(*) FILTER (WHERE type = 'mandatory_listing_exempted') AS exempted
        FROM lifecycle_events
        WHERE {_OWN} AND {_YEAR_OF.format(at="occurred_at")}""",
}


async def sql_figures(pool: asyncpg.Pool, institution: str, year: int) -> dict[str, Any]:
    """The report's added figures for one institution and year, from the events table."""
    rows = {name: await pool.fetch(sql, institution, year) for name, sql in _SQL_FIGURES.items()}
    [tax], [poc], [mandatory] = rows["tax"], rows["poc"], rows["mandatory"]
    [pay], [companies], [equity], [disclosed] = (
        rows["payments"],
        rows["companies"],
        rows["equity"],
        rows["disclosed"],
    )
    months = {r["month"]: r["cash"] for r in rows["months"]}
    return {
        "payments": pay["n"],
        "cash": (pay["cash"], pay["costs"], pay["fee"], pay["net"]),
        "split": (pay["team"], pay["tto"], pay["inst"]),
        "months": [months.get(m, Decimal(0)) for m in range(1, 13)],
        "contracts": {r["kind"]: (r["n"], r["amount"]) for r in rows["contracts"]},
        "companies": companies["n"],
        "equity": (equity["n"], equity["state_owned"]),
        "disclosed": disclosed["n"],
        "ip_kinds": {r["kind"]: r["n"] for r in rows["ip_kinds"]},
        "tax": (tax["n"], tax["amount"]),
        "poc": (poc["n"], poc["amount"]),
        "mandatory": (mandatory["triggered"], mandatory["exempted"]),
    }


class Ledger:
    """One fresh institution's hand-written events, recorded through the real projection."""

    def __init__(self) -> None:
        self.inst = f"B{uuid.uuid4().hex[:6].upper()}"
        self.ds = DataSet(institutions=[self.inst], years=[])

    def _emit(
        self, type: EventType, payload: dict[str, Any], occurred_at: datetime, n: int
    ) -> None:
        aid = f"{self.inst}-{n:03d}"
        self.ds.events.append(
            LifecycleEvent(
                event_id=str(uuid.uuid4()),
                achievement_id=aid,
                workflow_id=f"achievement-{aid}",
                institution_code=self.inst,
                type=type,
                stage="transaction",
                occurred_at=occurred_at,
                source="test",
                payload=payload,
            )
        )
        self.ds.views[aid] = AchievementView(
            achievement_id=aid,
            workflow_id=f"achievement-{aid}",
            institution_code=self.inst,
            title=f"Dated achievement {aid}",
            field="biomedicine",
            stage="transaction",
            modes=["licence"],
            funding_kinds=[],
            mandatory_listing_due=None,
            waiting_on=None,
            waiting_until=None,
            synthetic=True,
            updated_at=occurred_at,
        )

    def pay(self, amount: str, paid_at: datetime, delivered: datetime) -> None:
        n = len(self.ds.events)
        payment = Payment(
            event_id=f"pay-{self.inst}-{n}",
            exchange="sstec",
            listing_id=f"L-{self.inst}-{n}",
            instalment=1,
            amount=Decimal(amount),
            costs=Decimal("10.00"),
            paid_at=paid_at,
        )
        distribution = Distribution.of(payment, DEFAULT_POLICY, team_rounds_up=True)
        payload = {
            **payment.model_dump(mode="json"),
            "distribution": distribution.model_dump(mode="json"),
        }
        self._emit(EventType.PAYMENT_RECEIVED, payload, delivered, n)

    def contract(self, amount: str, registered_at: datetime, delivered: datetime) -> None:
        payload = {
            "certificate_number": "TC-1",
            "verified_amount": amount,
            "tax_preference_eligible": True,
            "registered_at": registered_at.isoformat(),
            "contract_type": "licence",
            "amount": amount,
        }
        self._emit(EventType.CONTRACT_REGISTERED, payload, delivered, len(self.ds.events))

    def company(self, founded_at: datetime, delivered: datetime) -> None:
        payload = {"company_name": "Spin-off", "founded_at": founded_at.isoformat()}
        self._emit(EventType.COMPANY_FOUNDED, payload, delivered, len(self.ds.events))

    def disclose(self, disclosed_at: datetime) -> None:
        self._emit(EventType.DISCLOSED, {"title": "x"}, disclosed_at, len(self.ds.events))

    async def record(self, db: asyncpg.Pool) -> None:
        await record(db, self.ds.events, self.ds)

    async def report(self, db: asyncpg.Pool, year: int) -> InstitutionAnnualReport:
        return await build_institution_report(db, self.inst, year, datetime.now(UTC))
