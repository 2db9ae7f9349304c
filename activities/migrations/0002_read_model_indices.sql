-- Indices of the list views and the annual report (issue 5).
-- A year of one institution's events, scanned once per annual report.
CREATE INDEX lifecycle_events_institution_time ON lifecycle_events (institution_code, occurred_at);
-- `list --mode X`: modes @> ARRAY[X].
CREATE INDEX achievements_modes ON achievements USING gin (modes);
-- `list --overdue`: waiting past a deadline.
CREATE INDEX achievements_waiting_until ON achievements (waiting_until)
    WHERE waiting_until IS NOT NULL;
