-- Bookkeeping shared by every source: stream state, run history, records set aside.
-- Runs with search_path set to the configured schema.

CREATE TABLE sync_state (
    source      text        NOT NULL,
    account     text        NOT NULL,
    stream      text        NOT NULL,
    watermark   timestamptz,
    state       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, account, stream)
);
COMMENT ON TABLE sync_state IS 'Where each stream stands; committed in the same transaction as the rows it covers';
COMMENT ON COLUMN sync_state.source IS 'Source system: takecontrol, superoffice or mluvii';
COMMENT ON COLUMN sync_state.account IS 'Configured account name';
COMMENT ON COLUMN sync_state.stream IS 'Stream within the account (e.g. sessions)';
COMMENT ON COLUMN sync_state.watermark IS 'Everything before this instant has been read; each run re-reads from watermark minus lookback';
COMMENT ON COLUMN sync_state.state IS 'Anything else the stream must remember between runs (e.g. sessions still to re-poll)';
COMMENT ON COLUMN sync_state.updated_at IS 'When this row last changed';

CREATE TABLE sync_runs (
    run_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text        NOT NULL,
    account         text        NOT NULL,
    stream          text        NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    rows_written    bigint      NOT NULL DEFAULT 0,
    rows_unchanged  bigint      NOT NULL DEFAULT 0,
    rows_rejected   bigint      NOT NULL DEFAULT 0,
    requests        bigint      NOT NULL DEFAULT 0,
    retries         bigint      NOT NULL DEFAULT 0,
    error           text
);
CREATE INDEX sync_runs_stream_idx ON sync_runs (source, account, stream, run_id DESC);
COMMENT ON TABLE sync_runs IS 'One row per run of a stream';
COMMENT ON COLUMN sync_runs.run_id IS 'Run number, increasing';
COMMENT ON COLUMN sync_runs.source IS 'Source system';
COMMENT ON COLUMN sync_runs.account IS 'Configured account name';
COMMENT ON COLUMN sync_runs.stream IS 'Stream within the account';
COMMENT ON COLUMN sync_runs.started_at IS 'When the run started';
COMMENT ON COLUMN sync_runs.finished_at IS 'When it ended; NULL while running (or if the process died: the next run marks it failed)';
COMMENT ON COLUMN sync_runs.status IS 'running, succeeded, partial (progress kept, but records rejected or a window failed) or failed';
COMMENT ON COLUMN sync_runs.rows_written IS 'Records inserted or changed';
COMMENT ON COLUMN sync_runs.rows_unchanged IS 'Records re-read whose content had not changed (not rewritten)';
COMMENT ON COLUMN sync_runs.rows_rejected IS 'Records set aside in rejected_records';
COMMENT ON COLUMN sync_runs.requests IS 'HTTP requests sent to the source, retries included';
COMMENT ON COLUMN sync_runs.retries IS 'HTTP requests retried';
COMMENT ON COLUMN sync_runs.error IS 'What went wrong, in plain words; NULL when nothing did';

CREATE TABLE rejected_records (
    source         text        NOT NULL,
    account        text        NOT NULL,
    stream         text        NOT NULL,
    record_key     text        NOT NULL,
    reason         text        NOT NULL,
    payload        jsonb,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, account, stream, record_key, reason)
);
COMMENT ON TABLE rejected_records IS 'Records that could not be turned into rows, with why; cleared when the record later parses';
COMMENT ON COLUMN rejected_records.source IS 'Source system';
COMMENT ON COLUMN rejected_records.account IS 'Configured account name';
COMMENT ON COLUMN rejected_records.stream IS 'Stream within the account';
COMMENT ON COLUMN rejected_records.record_key IS 'The record''s id when known, else its position in the response';
COMMENT ON COLUMN rejected_records.reason IS 'Why it was set aside: a reason code, then details';
COMMENT ON COLUMN rejected_records.payload IS 'The record as received, minus secrets';
COMMENT ON COLUMN rejected_records.first_seen_at IS 'When it was first set aside';
COMMENT ON COLUMN rejected_records.last_seen_at IS 'When it was last seen in a response';
