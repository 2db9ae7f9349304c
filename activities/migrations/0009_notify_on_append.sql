-- A NOTIFY on channel `lifecycle_events` for every append that added events, at commit: the
-- parties that react to a lifecycle (an exchange integration, a dashboard, the benchmark's
-- driver) LISTEN instead of polling. Payload (JSON): workflow_id, stage (the view's, after the
-- append), last_seq (resume the feed after the previous one) and types (the appended events'
-- types, in order). Same function as 0007 otherwise.
CREATE OR REPLACE FUNCTION append_lifecycle_events(events jsonb, view jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    new_seq bigint;
    last_seq bigint;
    appended integer := 0;
    new_types text[] := '{}';
    note text;
BEGIN
    -- Serialise appends until commit, so seq order is commit order: a feed reader resuming
    -- after seq N can never miss a lower seq that committed later.
    PERFORM pg_advisory_xact_lock(7413220002);
    FOR e IN
        SELECT r.* FROM jsonb_populate_recordset(NULL::lifecycle_events, events)
            WITH ORDINALITY AS r ORDER BY r.ordinality
    LOOP
        INSERT INTO lifecycle_events
            (event_id, achievement_id, workflow_id, institution_code, type, stage,
             occurred_at, source, payload, actor)
        VALUES (e.event_id, e.achievement_id, e.workflow_id, e.institution_code, e.type,
                e.stage, e.occurred_at, e.source, e.payload, e.actor)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING seq INTO new_seq;
        IF FOUND THEN
            appended := appended + 1;
            last_seq := new_seq;
            new_types := new_types || e.type;
        END IF;
    END LOOP;
    IF last_seq IS NOT NULL THEN
        -- Only a newer event moves the row: a late retry of an older event must not roll it
        -- back. A view without a panel (recorded before panels were projected) keeps the row's.
        INSERT INTO achievements
            (achievement_id, workflow_id, institution_code, title, field, stage, modes,
             funding_kinds, mandatory_listing_due, waiting_on, waiting_until, synthetic,
             last_event_seq, updated_at, panel, needs_attention_since, attention_reason,
             next_action)
        SELECT v.achievement_id, v.workflow_id, v.institution_code, v.title, v.field, v.stage,
               v.modes, v.funding_kinds, v.mandatory_listing_due, v.waiting_on, v.waiting_until,
               v.synthetic, last_seq, v.updated_at, COALESCE(v.panel, '{}'), v.needs_attention_since,
               v.attention_reason, v.next_action
        FROM jsonb_populate_record(NULL::achievements, view) AS v
        ON CONFLICT (achievement_id) DO UPDATE SET
            workflow_id = EXCLUDED.workflow_id, stage = EXCLUDED.stage, modes = EXCLUDED.modes,
            mandatory_listing_due = EXCLUDED.mandatory_listing_due,
            waiting_on = EXCLUDED.waiting_on, waiting_until = EXCLUDED.waiting_until,
            last_event_seq = EXCLUDED.last_event_seq, updated_at = EXCLUDED.updated_at,
            panel = CASE WHEN cardinality(EXCLUDED.panel) > 0 THEN EXCLUDED.panel
                         ELSE achievements.panel END,
            needs_attention_since = EXCLUDED.needs_attention_since,
            attention_reason = EXCLUDED.attention_reason, next_action = EXCLUDED.next_action
        WHERE achievements.last_event_seq < EXCLUDED.last_event_seq;
        -- Delivered at commit, only for what this call appended (a retry is silent). Small:
        -- the types and where to resume the feed, never the payloads (NOTIFY's limit is
        -- 8000 bytes; a batch with too many types to fit says only how to read them).
        note := json_build_object('workflow_id', view->>'workflow_id', 'stage', view->>'stage',
                                  'last_seq', last_seq, 'types', to_jsonb(new_types))::text;
        IF octet_length(note) > 7900 THEN
            note := json_build_object('workflow_id', view->>'workflow_id',
                                      'stage', view->>'stage', 'last_seq', last_seq,
                                      'types', NULL)::text;
        END IF;
        PERFORM pg_notify('lifecycle_events', note);
    END IF;
    RETURN appended;
END
$$;
