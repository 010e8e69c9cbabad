-- One way to say "unchanged" for every source: a fingerprint of the record as received and of how
-- it is read, in `content_hash` (Take Control has had one since migration 0007). An upsert
-- rewrites a row only when its fingerprint differs. Rows stored before this migration have none:
-- each is rewritten once, at its next read.

ALTER TABLE mluvii_sessions ADD COLUMN content_hash text;
COMMENT ON COLUMN mluvii_sessions.content_hash IS 'Fingerprint of the session and routing history as received and read (sessionsync internal): equal means unchanged';
ALTER TABLE superoffice_chat_sessions ADD COLUMN content_hash text;
COMMENT ON COLUMN superoffice_chat_sessions.content_hash IS 'Fingerprint of the session as received and read (sessionsync internal): equal means unchanged';
