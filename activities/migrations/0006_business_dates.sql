-- The annual report counts each event by its business date (issue 12, item 7): a payment by
-- when it was paid, a contract by when it was registered, a company by when it was founded;
-- every other event (a disclosure, whose occurred_at is its disclosure date; a stage entered)
-- by when it occurred. A payment dated 31 December and delivered on 2 January is December's.
--
-- A column filled on insert by a trigger, not a generated column: casting the payload's text
-- to timestamptz is only STABLE (it could depend on the session's TimeZone), and generated
-- columns need IMMUTABLE. The payload's timestamps always carry their offset (pydantic's
-- AwareDatetime), so the value never depends on the session. A trigger, rather than the
-- append function, covers every way a row is written, including a later version of it.
CREATE FUNCTION lifecycle_business_at(type text, payload jsonb, occurred_at timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (CASE type
            WHEN 'payment_received' THEN payload->>'paid_at'
            WHEN 'contract_registered' THEN payload->>'registered_at'
            WHEN 'company_founded' THEN payload->>'founded_at'
        END)::timestamptz,
        occurred_at)
$$;

CREATE FUNCTION lifecycle_events_business_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.business_at := lifecycle_business_at(NEW.type, NEW.payload, NEW.occurred_at);
    RETURN NEW;
END
$$;

ALTER TABLE lifecycle_events ADD COLUMN business_at TIMESTAMPTZ;
-- Existing rows: the same function, once. Events are append-only, so INSERT is enough after.
UPDATE lifecycle_events SET business_at = lifecycle_business_at(type, payload, occurred_at);
ALTER TABLE lifecycle_events ALTER COLUMN business_at SET NOT NULL;
CREATE TRIGGER lifecycle_events_business_at BEFORE INSERT ON lifecycle_events
    FOR EACH ROW EXECUTE FUNCTION lifecycle_events_business_at();

-- A year of one institution's events by business date (activities/reports.py); the late ones
-- of earlier years are found by occurred_at on lifecycle_events_institution_time.
CREATE INDEX lifecycle_events_institution_business
    ON lifecycle_events (institution_code, business_at);

-- The report's grouping now takes the month of the business date in the reporting zone; as in
-- 0004, statistics on exactly the expressions of _FIGURES, with the default zone written out
-- (the report's plans are custom, so its zone parameter is a constant the planner matches).
DROP STATISTICS IF EXISTS lifecycle_events_report_groups;
CREATE STATISTICS lifecycle_events_report_groups ON
    institution_code,
    type,
    (CASE WHEN type = 'payment_received'
        THEN date_part('month', business_at AT TIME ZONE 'Asia/Shanghai')::int END),
    (CASE type WHEN 'contract_registered' THEN payload->>'contract_type'
        WHEN 'stage_entered' THEN payload->>'stage' END)
FROM lifecycle_events;
ANALYZE lifecycle_events;
