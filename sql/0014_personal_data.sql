-- Personal data (docs/privacy.md): the policy each session row was written under, the source's
-- deletions, the recorded erasures, and the indexes `erase` finds a person with.

-- The policy a row was written under: one letter per class (k, h, d; docs/privacy.md section 2)
-- and, when something is hashed, the key's fingerprint. Set by every write from the writing
-- transaction's `sessionsync.privacy_policy`; NULL for rows written before this migration (under
-- "keep everything").
ALTER TABLE takecontrol_sessions ADD COLUMN privacy_policy text DEFAULT current_setting('sessionsync.privacy_policy', true);
ALTER TABLE superoffice_chat_sessions ADD COLUMN privacy_policy text DEFAULT current_setting('sessionsync.privacy_policy', true);
ALTER TABLE mluvii_sessions ADD COLUMN privacy_policy text DEFAULT current_setting('sessionsync.privacy_policy', true);
COMMENT ON COLUMN takecontrol_sessions.privacy_policy IS 'The [privacy] policy the row was written under (one letter per class: k keep, h hash, d drop; then the key fingerprint); NULL: written before policies existed (kept)';
COMMENT ON COLUMN superoffice_chat_sessions.privacy_policy IS 'The [privacy] policy the row was written under (one letter per class: k keep, h hash, d drop; then the key fingerprint); NULL: written before policies existed (kept)';
COMMENT ON COLUMN mluvii_sessions.privacy_policy IS 'The [privacy] policy the row was written under (one letter per class: k keep, h hash, d drop; then the key fingerprint); NULL: written before policies existed (kept)';

-- A session the vendor no longer knows (404 when read by id, or SuperOffice's Deleted) stays, for
-- BI's counts, with its personal data erased.
ALTER TABLE takecontrol_sessions ADD COLUMN source_deleted_at timestamptz;
ALTER TABLE superoffice_chat_sessions ADD COLUMN source_deleted_at timestamptz;
ALTER TABLE mluvii_sessions ADD COLUMN source_deleted_at timestamptz;
COMMENT ON COLUMN takecontrol_sessions.source_deleted_at IS 'When sessionsync found the session deleted at the source; its personal data is erased';
COMMENT ON COLUMN superoffice_chat_sessions.source_deleted_at IS 'When sessionsync found the session deleted at the source (404, or Status Deleted); its personal data is erased';
COMMENT ON COLUMN mluvii_sessions.source_deleted_at IS 'When sessionsync found the session deleted at the source (404 on Sessions/{id}); its personal data is erased';

-- Every erasure, as keyed hashes of its selectors (never a value in clear): a later write of a
-- record that matches one is written erased.
CREATE TABLE erasures (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    erased_at      timestamptz NOT NULL DEFAULT now(),
    selector_kind  text        NOT NULL,
    selector_hash  text        NOT NULL,
    sessions       int         NOT NULL DEFAULT 0,
    reason         text
);
COMMENT ON TABLE erasures IS 'Erasures of personal data (sessionsync erase, deletions at the source): keyed hashes of the selectors, so that a re-sync never brings a person back';
COMMENT ON COLUMN erasures.id IS 'Order of the erasures';
COMMENT ON COLUMN erasures.erased_at IS 'When it was erased';
COMMENT ON COLUMN erasures.selector_kind IS 'email, phone, customer_name or session';
COMMENT ON COLUMN erasures.selector_hash IS 'HMAC-SHA256(hash_key, normalized selector), lower-case hex';
COMMENT ON COLUMN erasures.sessions IS 'How many sessions it erased when it was recorded';
COMMENT ON COLUMN erasures.reason IS 'The --reason given, or source_deleted / anonymized';

-- Normalized as docs/privacy.md section 2 says (a hash is left as it is by both), so that `erase`
-- finds a value stored in clear or hashed through one index.
-- (Plain SQL bodies, so that PostgreSQL inlines them when it maintains the indexes: a write
-- pays for the expression, not for a function call.) The indexes are hash indexes: `erase` only
-- asks for equality, and a hash index keeps 4 bytes per row where a btree would keep the whole
-- value (a 64-digit hash under `hash`), at a fraction of the write cost.
CREATE FUNCTION sessionsync_norm_text(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT lower(regexp_replace(btrim(t), '\s+', ' ', 'g')) $$;
CREATE FUNCTION sessionsync_norm_phone(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT CASE WHEN t ~ '^[0-9a-f]{64}$' THEN t ELSE regexp_replace(t, '[^+0-9]', '', 'g') END $$;

CREATE INDEX takecontrol_sessions_email_idx ON takecontrol_sessions USING hash (sessionsync_norm_text(customer_email));
CREATE INDEX takecontrol_sessions_name_idx ON takecontrol_sessions USING hash (sessionsync_norm_text(customer_name));
CREATE INDEX superoffice_chat_sessions_email_idx ON superoffice_chat_sessions USING hash (sessionsync_norm_text(customer_email));
CREATE INDEX superoffice_chat_sessions_name_idx ON superoffice_chat_sessions USING hash (sessionsync_norm_text(customer_name));
CREATE INDEX superoffice_chat_sessions_alias_idx ON superoffice_chat_sessions USING hash (sessionsync_norm_text(customer_alias));
CREATE INDEX superoffice_chat_sessions_phone_idx ON superoffice_chat_sessions USING hash (sessionsync_norm_phone(customer_phone));
CREATE INDEX mluvii_sessions_callback_idx ON mluvii_sessions USING hash (sessionsync_norm_phone(phone_callback_number));
CREATE INDEX mluvii_sessions_direct_idx ON mluvii_sessions USING hash (sessionsync_norm_phone(direct_call_number));
CREATE INDEX mluvii_sessions_identity_idx ON mluvii_sessions USING hash (sessionsync_norm_text(raw -> 'guest' ->> 'identity'));
CREATE INDEX mluvii_routing_events_phone_idx ON mluvii_routing_events USING hash (sessionsync_norm_phone(phone_number));
CREATE INDEX erasures_selector_idx ON erasures (selector_hash);
