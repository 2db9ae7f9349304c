-- Append-only lifecycle events and the current state of each achievement.
CREATE TABLE lifecycle_events (
    seq              BIGSERIAL PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    achievement_id   TEXT NOT NULL,
    workflow_id      TEXT NOT NULL,
    institution_code TEXT NOT NULL,
    type             TEXT NOT NULL,
    stage            TEXT NOT NULL,
    occurred_at      TIMESTAMPTZ NOT NULL,
    source           TEXT NOT NULL,
    payload          JSONB NOT NULL DEFAULT '{}'::jsonb,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX lifecycle_events_achievement ON lifecycle_events (achievement_id, seq);
CREATE INDEX lifecycle_events_report ON lifecycle_events (institution_code, type, occurred_at);

CREATE TABLE achievements (
    achievement_id        TEXT PRIMARY KEY,
    workflow_id           TEXT NOT NULL,
    institution_code      TEXT NOT NULL,
    title                 TEXT NOT NULL,
    field                 TEXT NOT NULL,
    stage                 TEXT NOT NULL,
    modes                 TEXT[] NOT NULL DEFAULT '{}',
    funding_kinds         TEXT[] NOT NULL DEFAULT '{}',
    mandatory_listing_due DATE,
    waiting_on            TEXT,
    waiting_until         TIMESTAMPTZ,
    synthetic             BOOLEAN NOT NULL DEFAULT false,
    last_event_seq        BIGINT NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX achievements_stage ON achievements (stage, institution_code);
CREATE INDEX achievements_institution ON achievements (institution_code, field);
CREATE INDEX achievements_mandatory_due ON achievements (mandatory_listing_due)
    WHERE mandatory_listing_due IS NOT NULL;
