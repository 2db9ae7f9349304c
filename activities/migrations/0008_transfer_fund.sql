-- The transfer fund's ledger (issue 13, item 3): each accrual from a payment's fund share and
-- each approved use, written by the TransferFund workflow of the institution (activities/fund.py).
-- The workflow holds the balance of record; this table is its projection for reads and the
-- annual report. entry_id is the fund's idempotency key (unique within the institution's fund), so
-- a retried write is a no-op.
CREATE TABLE fund_entries (
    entry_id TEXT NOT NULL,
    institution_code TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('accrual', 'use')),
    amount NUMERIC(16, 2) NOT NULL CHECK (amount > 0),
    balance_after NUMERIC(16, 2) NOT NULL CHECK (balance_after >= 0),
    achievement_id TEXT,
    payment_event_id TEXT,
    purpose TEXT,
    approver TEXT,
    actor TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    -- When it counts: a payment's paid_at, a use's approval; and that instant's date on the
    -- jurisdiction's calendar (Asia/Shanghai), which the report groups by.
    business_at TIMESTAMPTZ NOT NULL,
    business_date DATE NOT NULL,
    -- The order the workflow recorded them in, for the balance after each.
    seq BIGSERIAL NOT NULL,
    CHECK ((kind = 'use') = (purpose IS NOT NULL AND approver IS NOT NULL)),
    CHECK ((kind = 'accrual') = (payment_event_id IS NOT NULL)),
    PRIMARY KEY (institution_code, entry_id)
);

CREATE INDEX fund_entries_institution_date ON fund_entries (institution_code, business_date);
CREATE INDEX fund_entries_institution_seq ON fund_entries (institution_code, seq);
