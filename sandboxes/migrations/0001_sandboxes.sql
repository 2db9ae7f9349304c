-- Sandboxes of the registry and the exchanges. Idempotent: run at every start.

CREATE SCHEMA IF NOT EXISTS registry_sandbox;

-- One row per idempotency key, written in the same transaction as the effect.
CREATE TABLE IF NOT EXISTS registry_sandbox.idempotency_keys (
    idempotency_key text PRIMARY KEY,
    request_hash    text NOT NULL,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE IF NOT EXISTS registry_sandbox.achievement_seq;
CREATE SEQUENCE IF NOT EXISTS registry_sandbox.contract_seq;
CREATE SEQUENCE IF NOT EXISTS registry_sandbox.equity_seq;
CREATE SEQUENCE IF NOT EXISTS registry_sandbox.poc_seq;
CREATE SEQUENCE IF NOT EXISTS registry_sandbox.report_seq;
CREATE SEQUENCE IF NOT EXISTS registry_sandbox.annual_seq;

-- Every registration, application and report; subject is the achievement id, or
-- "<institution>/<year>" for annual reports.
CREATE TABLE IF NOT EXISTS registry_sandbox.records (
    number      text PRIMARY KEY,
    kind        text NOT NULL,
    subject     text NOT NULL,
    request     jsonb NOT NULL,
    response    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS records_kind_subject ON registry_sandbox.records (kind, subject);
-- The registry's own rule: one registration per achievement.
CREATE UNIQUE INDEX IF NOT EXISTS records_one_registration
    ON registry_sandbox.records (subject) WHERE kind = 'achievement';

-- Plan item 6: evaluation requests forwarded to evaluation institutions, and the reports the
-- sandbox's institutions send back through the registry (signed as registry webhooks), each
-- delivered at least once when due.
CREATE SEQUENCE IF NOT EXISTS registry_sandbox.evaluation_seq;
CREATE TABLE IF NOT EXISTS registry_sandbox.report_outbox (
    event_id        text PRIMARY KEY,
    request_number  text NOT NULL,
    body            text NOT NULL,
    due_at          timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS report_outbox_due
    ON registry_sandbox.report_outbox (due_at) WHERE status = 'pending';


CREATE SCHEMA IF NOT EXISTS exchange_sandbox;

CREATE TABLE IF NOT EXISTS exchange_sandbox.idempotency_keys (
    idempotency_key text PRIMARY KEY,
    request_hash    text NOT NULL,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE IF NOT EXISTS exchange_sandbox.listing_seq;

CREATE TABLE IF NOT EXISTS exchange_sandbox.listings (
    listing_id          text PRIMARY KEY,
    exchange            text NOT NULL,
    achievement_id      text NOT NULL,
    title               text NOT NULL,
    field               text NOT NULL,
    status              text NOT NULL,
    request             jsonb NOT NULL,
    deal                jsonb,
    listed_at           timestamptz NOT NULL,
    publicity_ends_at   timestamptz NOT NULL,
    closed_at           timestamptz
);
CREATE INDEX IF NOT EXISTS listings_achievement ON exchange_sandbox.listings (achievement_id);
CREATE INDEX IF NOT EXISTS listings_field ON exchange_sandbox.listings (exchange, field);

CREATE TABLE IF NOT EXISTS exchange_sandbox.withdrawals (
    id              bigserial PRIMARY KEY,
    exchange        text NOT NULL,
    listing_id      text NOT NULL REFERENCES exchange_sandbox.listings (listing_id),
    achievement_id  text NOT NULL,
    reason          text NOT NULL,
    withdrawn_at    timestamptz NOT NULL
);

-- Deals the seller refused: the listing was opened again.
CREATE TABLE IF NOT EXISTS exchange_sandbox.deal_rejections (
    id              bigserial PRIMARY KEY,
    exchange        text NOT NULL,
    listing_id      text NOT NULL REFERENCES exchange_sandbox.listings (listing_id),
    achievement_id  text NOT NULL,
    deal_id         text NOT NULL,
    deal            jsonb NOT NULL,
    reason          text NOT NULL,
    rejected_at     timestamptz NOT NULL
);

-- Webhook outbox: body is the exact text that is signed and sent.
CREATE TABLE IF NOT EXISTS exchange_sandbox.webhook_outbox (
    event_id        text PRIMARY KEY,
    event_type      text NOT NULL,
    exchange        text NOT NULL,
    listing_id      text NOT NULL,
    achievement_id  text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_status     integer,
    last_error      text
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due
    ON exchange_sandbox.webhook_outbox (next_attempt_at) WHERE status = 'pending';
