-- A fingerprint of each Take Control session's stored content (row and child rows), so that a
-- re-read of unchanged sessions is one indexed lookup instead of a compared upsert.

ALTER TABLE takecontrol_sessions ADD COLUMN content_hash text;
COMMENT ON COLUMN takecontrol_sessions.content_hash IS 'Fingerprint of the stored content (sessionsync internal): equal means unchanged';
