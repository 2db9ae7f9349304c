"""The technology-transfer office's special fund (plan item 4): accruals from each payment's
fund share, uses approved by an approver, and the ledger of both.

One TransferFund workflow per institution holds the balance (workflows/transfer_fund.py); the
ledger in PostgreSQL (migration 0008) is its projection, for reads and the annual report.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.identity import Actor
from schemas.money import Money
from schemas.text import Line

# Idempotency keys the fund remembers across continue-as-new: retries come within minutes, so
# the last few thousand cover them (the ledger's primary key catches any older duplicate).
RECENT_KEYS = 2000


class EntryKind(StrEnum):
    ACCRUAL = "accrual"
    USE = "use"


class FundAccrual(BaseModel):
    """One payment's fund share, sent by the achievement's lifecycle after it recorded the
    payment. `key` (the achievement and the payment's event id) makes a resend a no-op."""

    model_config = ConfigDict(frozen=True)

    institution: Line
    achievement_id: Line
    payment_event_id: Line
    amount: Money
    paid_at: AwareDatetime
    # Who caused it: the lifecycle that recorded the payment (`lifecycle:<workflow id>`).
    actor: Line

    @property
    def key(self) -> str:
        return f"accrual/{self.achievement_id}/{self.payment_event_id}"


class FundUseRequest(BaseModel):
    """What an officer asks the gateway for: a use of the fund, approved by an approver of the
    same institution (whose own token the officer presents; see gateway/routes/funds.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: Line = Field(
        min_length=1,
        max_length=100,
        description="Chosen by the caller; sending it again is a no-op that answers the same",
    )
    amount: Money = Field(description="Above zero and at most the fund's balance")
    purpose: Line = Field(min_length=1, max_length=500, description="What the money is for")


class FundUse(BaseModel):
    """A use as the fund workflow takes it: the request and the verified people behind it."""

    model_config = ConfigDict(frozen=True)

    institution: Line
    request: FundUseRequest
    officer: Actor
    approver: Actor

    @property
    def key(self) -> str:
        return f"use/{self.request.request_id}"


class FundEntry(BaseModel):
    """One line of the ledger, as the fund workflow records it and the projection stores it."""

    model_config = ConfigDict(frozen=True)

    entry_id: Line
    institution: Line
    kind: EntryKind
    amount: Money
    balance_after: Money
    achievement_id: Line | None = None
    payment_event_id: Line | None = None
    purpose: Line | None = None
    approver: Line | None = None  # role:subject of the approver
    actor: Line  # who caused it: role:subject of the officer, or the lifecycle
    occurred_at: AwareDatetime
    # The date it counts on: a payment's paid_at, a use's approval time.
    business_at: AwareDatetime


class FundUseResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry_id: Line
    balance: Money
    duplicate: bool = False


class FundState(BaseModel):
    """What a continue-as-new carries: the balance, the recent keys and unwritten entries."""

    institution: Line
    jurisdiction: Line
    balance: Money = Decimal("0.00")
    recent_keys: list[Line] = Field(default_factory=list)
    # Entries recorded in the workflow but not yet in PostgreSQL.
    unprojected: list[FundEntry] = Field(default_factory=list)
    entries: int = 0


class FundBalance(BaseModel):
    """The workflow's answer to a query: the balance of record."""

    model_config = ConfigDict(frozen=True)

    institution: Line
    balance: Money
    entries: int
    unprojected: int


class FundView(BaseModel):
    """GET /funds/{institution}: the balance and the ledger's recent entries."""

    model_config = ConfigDict(frozen=True)

    institution: Line
    balance: Money
    accrued: Money
    used: Money
    entries: list[FundEntry]


def new_balance(balance: Decimal, kind: EntryKind, amount: Decimal) -> Decimal:
    return balance + amount if kind is EntryKind.ACCRUAL else balance - amount
