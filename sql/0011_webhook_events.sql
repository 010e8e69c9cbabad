-- The webhook inbox: an authenticated vendor event is committed here before the listener answers
-- 200, so a crash after the answer loses nothing. A worker claims an account's rows (FOR UPDATE
-- SKIP LOCKED: replicas never read the same event twice at once), re-reads the sessions they name
-- and deletes the rows in the same transaction as the sessions it writes. The table is a queue:
-- rows live seconds; it holds only what is still to do.

CREATE TABLE webhook_events (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text        NOT NULL,
    account      text        NOT NULL,
    session_id   bigint      NOT NULL,
    event_type   text        NOT NULL,
    event_key    text        NOT NULL,
    received_at  timestamptz NOT NULL,
    attempts     int         NOT NULL DEFAULT 0,
    retry_after  timestamptz,
    last_error   text
);
-- A delivery of an event still waiting (same vendor event id, or the same body) is a duplicate.
CREATE UNIQUE INDEX webhook_events_key_idx ON webhook_events (source, account, event_key);
-- The worker's claim: an account's oldest rows first.
CREATE INDEX webhook_events_claim_idx ON webhook_events (source, account, id);
COMMENT ON TABLE webhook_events IS 'Vendor webhook events accepted but not yet acted on (a queue: a row is deleted when its session is written)';
COMMENT ON COLUMN webhook_events.id IS 'Arrival order';
COMMENT ON COLUMN webhook_events.source IS 'Source system: superoffice or mluvii';
COMMENT ON COLUMN webhook_events.account IS 'Configured account name';
COMMENT ON COLUMN webhook_events.session_id IS 'The session the event names (SuperOffice PrimaryKey, mluvii data.id)';
COMMENT ON COLUMN webhook_events.event_type IS 'The vendor''s event type, e.g. chatsession.changed or SessionEnded';
COMMENT ON COLUMN webhook_events.event_key IS 'The vendor''s event id, or a SHA-256 of the body when it has none';
COMMENT ON COLUMN webhook_events.received_at IS 'When the request arrived';
COMMENT ON COLUMN webhook_events.attempts IS 'Failed attempts to act on it (the vendor API failing); after the last one it is set aside in rejected_records';
COMMENT ON COLUMN webhook_events.retry_after IS 'Not tried again before this instant (after a failed attempt)';
COMMENT ON COLUMN webhook_events.last_error IS 'Why the last attempt failed';
