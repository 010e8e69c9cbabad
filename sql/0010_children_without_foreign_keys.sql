-- Child rows are written in the same transaction as their session (and replaced with it), which
-- is what keeps them consistent; the foreign keys only checked it again, row by row, and were the
-- largest single cost of a backfill (dlt, Airbyte and Fivetran declare none in their
-- destinations either). They are dropped. What they gave BI and operators is kept:
--   - the relationship is documented on the columns (COMMENT ON below, docs/warehouse.md) and the
--     views join on it;
--   - deleting sessions deletes their children, and truncating the sessions table truncates the
--     child tables, through statement-level triggers (no cost on insert or update).
-- The functions keep the search_path of this migration (the configured schema), so a delete by
-- any role with any search_path reaches the right tables.

ALTER TABLE takecontrol_chat_messages DROP CONSTRAINT IF EXISTS takecontrol_chat_messages_account_session_id_fkey;
ALTER TABLE takecontrol_video_links DROP CONSTRAINT IF EXISTS takecontrol_video_links_account_session_id_fkey;
ALTER TABLE mluvii_session_operators DROP CONSTRAINT IF EXISTS mluvii_session_operators_account_session_id_fkey;
ALTER TABLE mluvii_routing_events DROP CONSTRAINT IF EXISTS mluvii_routing_events_account_session_id_fkey;
ALTER TABLE mluvii_session_durations DROP CONSTRAINT IF EXISTS mluvii_session_durations_account_session_id_fkey;

CREATE FUNCTION takecontrol_sessions_delete_children() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM takecontrol_chat_messages c USING deleted d
     WHERE c.account = d.account AND c.session_id = d.session_id;
    DELETE FROM takecontrol_video_links c USING deleted d
     WHERE c.account = d.account AND c.session_id = d.session_id;
    RETURN NULL;
END $$;
CREATE TRIGGER takecontrol_sessions_delete_children AFTER DELETE ON takecontrol_sessions
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION takecontrol_sessions_delete_children();

CREATE FUNCTION takecontrol_sessions_truncate_children() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE takecontrol_chat_messages, takecontrol_video_links;
    RETURN NULL;
END $$;
CREATE TRIGGER takecontrol_sessions_truncate_children AFTER TRUNCATE ON takecontrol_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION takecontrol_sessions_truncate_children();

CREATE FUNCTION mluvii_sessions_delete_children() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM mluvii_session_operators c USING deleted d
     WHERE c.account = d.account AND c.session_id = d.session_id;
    DELETE FROM mluvii_routing_events c USING deleted d
     WHERE c.account = d.account AND c.session_id = d.session_id;
    DELETE FROM mluvii_session_durations c USING deleted d
     WHERE c.account = d.account AND c.session_id = d.session_id;
    RETURN NULL;
END $$;
CREATE TRIGGER mluvii_sessions_delete_children AFTER DELETE ON mluvii_sessions
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION mluvii_sessions_delete_children();

CREATE FUNCTION mluvii_sessions_truncate_children() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE mluvii_session_operators, mluvii_routing_events, mluvii_session_durations;
    RETURN NULL;
END $$;
CREATE TRIGGER mluvii_sessions_truncate_children AFTER TRUNCATE ON mluvii_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION mluvii_sessions_truncate_children();

COMMENT ON COLUMN takecontrol_chat_messages.session_id IS 'Take Control session ID; (account, session_id) references takecontrol_sessions, written and deleted with it';
COMMENT ON COLUMN takecontrol_video_links.session_id IS 'Take Control session ID; (account, session_id) references takecontrol_sessions, written and deleted with it';
COMMENT ON COLUMN mluvii_session_operators.session_id IS 'mluvii session ID; (account, session_id) references mluvii_sessions, written and deleted with it';
COMMENT ON COLUMN mluvii_routing_events.session_id IS 'mluvii session ID; (account, session_id) references mluvii_sessions, written and deleted with it';
COMMENT ON COLUMN mluvii_session_durations.session_id IS 'mluvii session ID; (account, session_id) references mluvii_sessions, written and deleted with it';
