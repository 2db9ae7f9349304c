-- Statistics for the annual report's one pass over a year of events (activities/reports.py,
-- _FIGURES), grouped by institution, type and the two expressions below, exactly as written
-- there. Without them the planner expects one group per event and sorts the year's events
-- instead of hashing a few dozen groups per institution. No cost on writes; ANALYZE keeps them.
CREATE STATISTICS IF NOT EXISTS lifecycle_events_report_groups ON
    institution_code,
    type,
    (CASE WHEN type = 'payment_received'
        THEN date_part('month', occurred_at AT TIME ZONE 'UTC')::int END),
    (CASE type WHEN 'contract_registered' THEN payload->>'contract_type'
        WHEN 'stage_entered' THEN payload->>'stage' END)
FROM lifecycle_events;
