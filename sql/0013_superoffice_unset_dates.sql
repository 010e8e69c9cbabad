-- SuperOffice has no null date (docs/sources.md section 2): it writes 0001-01-01, 1760-01-01 or
-- 1753-01-01 for a date that is not set, and 9999-12-31 for "forever". Rows stored before
-- sessionsync knew it hold those values (a chat still in the queue "ended" in year 1, with a
-- handle time of 0 s). Every date before 1900-01-01 or after 9000-01-01 becomes NULL, and each
-- duration computed from such a date becomes NULL too (the others were right and stay).
-- Idempotent: a second run finds no row to change.

UPDATE superoffice_chat_sessions SET
    requested_at = CASE WHEN requested_at < '1900-01-01 00:00:00+00' OR requested_at > '9000-01-01 00:00:00+00' THEN NULL ELSE requested_at END,
    started_at   = CASE WHEN started_at   < '1900-01-01 00:00:00+00' OR started_at   > '9000-01-01 00:00:00+00' THEN NULL ELSE started_at END,
    ended_at     = CASE WHEN ended_at     < '1900-01-01 00:00:00+00' OR ended_at     > '9000-01-01 00:00:00+00' THEN NULL ELSE ended_at END,
    idle_at      = CASE WHEN idle_at      < '1900-01-01 00:00:00+00' OR idle_at      > '9000-01-01 00:00:00+00' THEN NULL ELSE idle_at END,
    fetched_at   = CASE WHEN fetched_at   < '1900-01-01 00:00:00+00' OR fetched_at   > '9000-01-01 00:00:00+00' THEN NULL ELSE fetched_at END,
    -- queue: started - requested; handle: ended - started; total: ended - requested.
    queue_seconds = CASE WHEN requested_at < '1900-01-01 00:00:00+00' OR requested_at > '9000-01-01 00:00:00+00'
                           OR started_at  < '1900-01-01 00:00:00+00' OR started_at   > '9000-01-01 00:00:00+00'
                         THEN NULL ELSE queue_seconds END,
    handle_seconds = CASE WHEN started_at < '1900-01-01 00:00:00+00' OR started_at   > '9000-01-01 00:00:00+00'
                           OR ended_at    < '1900-01-01 00:00:00+00' OR ended_at     > '9000-01-01 00:00:00+00'
                          THEN NULL ELSE handle_seconds END,
    total_seconds = CASE WHEN requested_at < '1900-01-01 00:00:00+00' OR requested_at > '9000-01-01 00:00:00+00'
                           OR ended_at     < '1900-01-01 00:00:00+00' OR ended_at     > '9000-01-01 00:00:00+00'
                         THEN NULL ELSE total_seconds END,
    last_synced_at = now()
WHERE requested_at < '1900-01-01 00:00:00+00' OR requested_at > '9000-01-01 00:00:00+00'
   OR started_at   < '1900-01-01 00:00:00+00' OR started_at   > '9000-01-01 00:00:00+00'
   OR ended_at     < '1900-01-01 00:00:00+00' OR ended_at     > '9000-01-01 00:00:00+00'
   OR idle_at      < '1900-01-01 00:00:00+00' OR idle_at      > '9000-01-01 00:00:00+00'
   OR fetched_at   < '1900-01-01 00:00:00+00' OR fetched_at   > '9000-01-01 00:00:00+00';

UPDATE superoffice_chat_messages SET posted_at = NULL, last_synced_at = now()
WHERE posted_at < '1900-01-01 00:00:00+00' OR posted_at > '9000-01-01 00:00:00+00';

COMMENT ON COLUMN superoffice_chat_sessions.requested_at IS 'WhenRequested: when the customer requested the session; NULL when SuperOffice says "not set" (a date before 1900 or after 9000)';
COMMENT ON COLUMN superoffice_chat_sessions.started_at IS 'WhenStarted: when a user accepted the session; NULL while the chat is still in the queue (SuperOffice''s "not set" date)';
COMMENT ON COLUMN superoffice_chat_sessions.ended_at IS 'WhenEnded; NULL while the chat is still running (SuperOffice''s "not set" date)';
COMMENT ON COLUMN superoffice_chat_sessions.idle_at IS 'WhenIdle: last time anyone sent a message; NULL when not set';
COMMENT ON COLUMN superoffice_chat_sessions.fetched_at IS 'WhenFetched: last time the customer''s client refetched; NULL when not set';
COMMENT ON COLUMN superoffice_chat_messages.posted_at IS 'WhenPosted; NULL when not set';
