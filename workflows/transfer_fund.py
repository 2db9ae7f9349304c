"""TransferFund: the technology-transfer office's special fund of one institution (plan item 4).

One entity workflow per institution (`transfer-fund-<code>`, workflows/ids.py) is the single
place its balance changes, so accruals and uses never race. Accruals are signals sent by the
lifecycles (signal-with-start, activities/fund.py) after they record a payment; uses are an
update whose validator refuses, before anything is recorded, a use above the balance. Both are
idempotent by key. Every entry is written to the PostgreSQL ledger by an activity (migration
0008), which the gateway and the annual report read.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.fund import FundActivities
    from schemas.fund import (
        RECENT_KEYS,
        EntryKind,
        FundAccrual,
        FundBalance,
        FundEntry,
        FundState,
        FundUse,
        FundUseResult,
        new_balance,
    )
    from schemas.identity import Role

ACCRUE_SIGNAL = "accrue"
USE_UPDATE = "use"
BALANCE_QUERY = "balance"

# Writing entries to PostgreSQL: idempotent (the entry id is the key), retried until it is back.
LEDGER_TIMEOUT = timedelta(seconds=15)
LEDGER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)

# Error types the gateway maps to a 422 naming the field (gateway/routes/funds.py).
INSUFFICIENT_BALANCE = "InsufficientFundBalance"
NOT_AN_APPROVER = "NotAnApprover"


@workflow.defn(name="TransferFund")
class TransferFund:
    @workflow.init
    def __init__(self, state: FundState) -> None:
        self.state = state
        self._keys = set(state.recent_keys)
        self._results: dict[str, FundUseResult] = {}

    @workflow.run
    async def run(self, state: FundState) -> None:
        s = self.state
        while True:
            workflow.set_current_details(
                f"**Transfer fund of {s.institution}**: balance {s.balance} CNY. Waiting for "
                "accruals from payments (sent by the lifecycles) and uses requested by an officer "
                f"of {s.institution} with the approval of one of its approvers. No deadline: "
                "the fund lives as long as the institution."
            )
            await workflow.wait_condition(
                lambda: bool(s.unprojected) or workflow.info().is_continue_as_new_suggested()
            )
            while s.unprojected:
                batch = list(s.unprojected)
                await workflow.execute_activity_method(
                    FundActivities.record_entries,
                    args=[batch, s.jurisdiction],
                    start_to_close_timeout=LEDGER_TIMEOUT,
                    retry_policy=LEDGER_RETRY,
                )
                del s.unprojected[: len(batch)]
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if s.unprojected:
                    continue  # written first, so the next run starts with nothing owed
                s.recent_keys = s.recent_keys[-RECENT_KEYS:]
                workflow.continue_as_new(s)

    def _remember(self, key: str) -> None:
        self._keys.add(key)
        self.state.recent_keys.append(key)
        if len(self.state.recent_keys) > 2 * RECENT_KEYS:
            dropped = self.state.recent_keys[:-RECENT_KEYS]
            self.state.recent_keys = self.state.recent_keys[-RECENT_KEYS:]
            self._keys.difference_update(dropped)

    def _record(
        self, entry_id: str, kind: EntryKind, amount: Decimal, **fields: object
    ) -> FundEntry:
        s = self.state
        s.balance = new_balance(s.balance, kind, amount)
        s.entries += 1
        entry = FundEntry.model_validate(
            {
                "entry_id": entry_id,
                "institution": s.institution,
                "kind": kind,
                "amount": amount,
                "balance_after": s.balance,
                "occurred_at": workflow.now(),
                **fields,
            }
        )
        s.unprojected.append(entry)
        return entry

    @workflow.signal(name=ACCRUE_SIGNAL, description="A payment's fund share; once per payment.")
    def accrue(self, accrual: FundAccrual) -> None:
        if accrual.key in self._keys:
            workflow.logger.info("Accrual %s already recorded", accrual.key)
            return
        if accrual.institution != self.state.institution:
            workflow.logger.warning("Accrual %s for another institution ignored", accrual.key)
            return
        self._remember(accrual.key)
        if accrual.amount == 0:
            return  # a payment whose rates leave the fund nothing: no line in the ledger
        self._record(
            accrual.key,
            EntryKind.ACCRUAL,
            accrual.amount,
            achievement_id=accrual.achievement_id,
            payment_event_id=accrual.payment_event_id,
            actor=accrual.actor,
            business_at=accrual.paid_at,
        )

    @workflow.update(name=USE_UPDATE, description="A use of the fund, approved; never below 0.")
    def use(self, use: FundUse) -> FundUseResult:
        if use.key in self._keys:
            known = self._results.get(use.key)
            return known or FundUseResult(
                entry_id=use.key, balance=self.state.balance, duplicate=True
            )
        self._remember(use.key)
        entry = self._record(
            use.key,
            EntryKind.USE,
            use.request.amount,
            purpose=use.request.purpose,
            approver=use.approver.label,
            actor=use.officer.label,
            business_at=workflow.now(),
        )
        result = FundUseResult(entry_id=entry.entry_id, balance=entry.balance_after)
        self._results[use.key] = result.model_copy(update={"duplicate": True})
        return result

    @use.validator
    def _validate_use(self, use: FundUse) -> None:
        """Refused before anything is recorded (not in history): the gateway checked the same,
        this is the fund's own word on it, with the balance only it knows."""
        s = self.state
        if use.key in self._keys:
            return  # a duplicate answers as before
        if use.institution != s.institution:
            raise ApplicationError("institution: not this fund's", type=NOT_AN_APPROVER)
        approver = use.approver
        if approver.role is not Role.APPROVER or approver.institution != s.institution:
            raise ApplicationError(
                f"approver: must be an approver of {s.institution}", type=NOT_AN_APPROVER
            )
        if approver.subject == use.officer.subject:
            raise ApplicationError(
                "approver: must be another person than the officer", type=NOT_AN_APPROVER
            )
        if use.request.amount <= 0:
            raise ApplicationError("amount: must be above 0", type=INSUFFICIENT_BALANCE)
        if use.request.amount > s.balance:
            raise ApplicationError(
                f"amount: {use.request.amount} exceeds the fund's balance of {s.balance}",
                type=INSUFFICIENT_BALANCE,
            )

    @workflow.query(name=BALANCE_QUERY)
    def balance(self) -> FundBalance:
        s = self.state
        return FundBalance(
            institution=s.institution,
            balance=s.balance,
            entries=s.entries,
            unprojected=len(s.unprojected),
        )
