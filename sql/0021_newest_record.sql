-- The newest session time each stream has stored (the largest start, request or creation time of
-- the records it wrote or found unchanged): `sessionsync_newest_record_timestamp_seconds`, the
-- NEWEST column of `status`, and the alert on a stream that stays silent (SessionsyncNoNewData).
-- Kept with the watermark, in the same transaction; filled here once from what is stored.
ALTER TABLE sync_state ADD COLUMN newest_record_at timestamptz;
COMMENT ON COLUMN sync_state.newest_record_at IS 'The newest session time stored by this stream (start, request or creation time): how silent a stream has been';
UPDATE sync_state s SET newest_record_at = t.newest
  FROM (SELECT account, max(started_at) AS newest FROM takecontrol_sessions GROUP BY account) t
 WHERE s.source = 'takecontrol' AND s.account = t.account;
UPDATE sync_state s SET newest_record_at = t.newest
  FROM (SELECT account, max(requested_at) AS newest FROM superoffice_chat_sessions GROUP BY account) t
 WHERE s.source = 'superoffice' AND s.account = t.account;
UPDATE sync_state s SET newest_record_at = t.newest
  FROM (SELECT account, max(created_at) AS newest FROM mluvii_sessions GROUP BY account) t
 WHERE s.source = 'mluvii' AND s.account = t.account;
