-- The completeness audit (sources.md section 5): one row per audit of an account and UTC day,
-- history kept. After a complete audit `listed` = `stored`: what a BI user reads as "the
-- warehouse matches the vendor's own list". Each audit's run is in sync_runs (stream 'audit').

CREATE TABLE audits (
    source      text        NOT NULL,
    account     text        NOT NULL,
    day         date        NOT NULL,
    run_id      bigint      NOT NULL,
    listed      int         NOT NULL,
    stored      int         NOT NULL,
    missing     int         NOT NULL,
    gone        int         NOT NULL,
    complete    boolean     NOT NULL,
    audited_at  timestamptz NOT NULL DEFAULT now(),
    error       text,
    PRIMARY KEY (source, account, day, run_id)
);
-- The latest audits of an account (status, the daemon's gauge at start): a step down by run.
CREATE INDEX audits_run_idx ON audits (source, account, run_id DESC);

COMMENT ON TABLE audits IS 'The completeness audit: per account and UTC day (of the session''s start), what the vendor''s own list holds against the warehouse; one row per audit, history kept';
COMMENT ON COLUMN audits.source IS 'Source system: takecontrol, superoffice or mluvii';
COMMENT ON COLUMN audits.account IS 'Configured account name';
COMMENT ON COLUMN audits.day IS 'UTC day of the sessions'' start (Take Control started_at, SuperOffice requested_at, mluvii created_at)';
COMMENT ON COLUMN audits.run_id IS 'The audit''s run in sync_runs (stream audit)';
COMMENT ON COLUMN audits.listed IS 'Sessions the vendor lists for the day as live (one it marks deleted itself is not counted)';
COMMENT ON COLUMN audits.stored IS 'The day''s sessions in the warehouse after the audit, not flagged deleted; equal to listed when the audit is complete';
COMMENT ON COLUMN audits.missing IS 'Listed, but absent from the warehouse before the audit (stored by it): what the incremental sync had missed';
COMMENT ON COLUMN audits.gone IS 'Stored sessions the vendor no longer has, flagged source_deleted_at by this audit (their personal data erased)';
COMMENT ON COLUMN audits.complete IS 'Every page of the day''s listing answered; when false, nothing of that day was flagged or stored';
COMMENT ON COLUMN audits.audited_at IS 'When the audit recorded the day';
COMMENT ON COLUMN audits.error IS 'Why the day is not complete (the listing failed); NULL when it is';

-- The audit reads one account's sessions of a few days. The start-first indexes (0009) serve a
-- range of every account; an index led by `account` would be entered by key probes under stale
-- statistics (0009's reason). These lead with `account` under collation "C": only a predicate
-- written with that collation can use them, which the audit's is and no key probe is.
CREATE INDEX takecontrol_sessions_audit_idx ON takecontrol_sessions ((account COLLATE "C"), started_at);
CREATE INDEX superoffice_chat_sessions_audit_idx ON superoffice_chat_sessions ((account COLLATE "C"), requested_at);
CREATE INDEX mluvii_sessions_audit_idx ON mluvii_sessions ((account COLLATE "C"), created_at);

-- support_sessions shows the sessions the vendor deleted (a count that should match the vendor's
-- own dashboard leaves them out). CREATE OR REPLACE VIEW may add columns at the end.
CREATE OR REPLACE VIEW support_sessions AS
SELECT 'takecontrol'::text           AS source,
       t.account,
       t.session_id::text            AS session_id,
       'remote'::text                AS channel,
       t.customer_name,
       t.customer_email,
       coalesce(t.tech_name, t.tech_username) AS agent,
       t.started_at                  AS requested_at,
       t.started_at,
       t.ended_at,
       NULL::double precision        AS wait_seconds,
       t.duration_seconds            AS handle_seconds,
       NULL::double precision        AS after_work_seconds,
       CASE WHEN t.ended_at IS NULL THEN 'open' ELSE 'ended' END AS status,
       t.source_deleted_at
  FROM takecontrol_sessions t
UNION ALL
SELECT 'superoffice',
       s.account,
       s.chat_session_id::text,
       'chat',
       s.customer_name,
       s.customer_email,
       s.user_associate_id::text,
       s.requested_at,
       s.started_at,
       s.ended_at,
       s.queue_seconds,
       s.handle_seconds,
       NULL::double precision,
       s.status,
       s.source_deleted_at
  FROM superoffice_chat_sessions s
UNION ALL
SELECT 'mluvii',
       m.account,
       m.session_id::text,
       lower(m.channel),
       NULL::text,
       NULL::text,
       (SELECT string_agg(coalesce(nullif(concat_ws(' ', o.first_name, o.last_name), ''), o.user_name, o.user_id::text),
                          ', ' ORDER BY o.joined_at NULLS LAST, o.user_id)
          FROM mluvii_session_operators o
         WHERE o.account = m.account AND o.session_id = m.session_id),
       m.created_at,
       m.started_at,
       m.ended_at,
       coalesce(d.in_queue_seconds + d.waiting_seconds, m.waited_seconds),
       m.length_seconds,
       d.acw_seconds,
       m.status,
       m.source_deleted_at
  FROM mluvii_sessions m
  LEFT JOIN mluvii_session_durations d USING (account, session_id);

COMMENT ON COLUMN support_sessions.source_deleted_at IS 'When sessionsync found the session deleted at the source (its personal data erased); NULL while the vendor has it. Counts that should match the vendor''s own dashboard leave these rows out';

-- The daily views count what the vendor's own dashboard counts: sessions the vendor deleted are
-- left out (support_sessions still shows them, with source_deleted_at).
CREATE OR REPLACE VIEW support_daily AS
SELECT (s.requested_at AT TIME ZONE 'UTC')::date                                   AS day,
       s.source,
       s.account,
       coalesce(s.agent, '(none)')                                                  AS agent,
       count(*)                                                                     AS sessions,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.wait_seconds)                  AS wait_p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s.wait_seconds)                  AS wait_p90_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.handle_seconds)                AS handle_p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s.handle_seconds)                AS handle_p90_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.after_work_seconds)            AS after_work_p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s.after_work_seconds)            AS after_work_p90_seconds
  FROM support_sessions s
 WHERE s.requested_at IS NOT NULL AND s.source_deleted_at IS NULL
 GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW support_daily IS 'Sessions per day (UTC, by requested_at), source, account and agent, with median and p90 wait, handle and after-work times (NULL values are left out of the percentiles); sessions the vendor deleted are not counted, so the counts match the vendor''s own dashboard';

CREATE OR REPLACE VIEW mluvii_operator_daily AS
SELECT (s.created_at AT TIME ZONE 'UTC')::date                                AS day,
       o.account,
       o.user_id,
       max(coalesce(nullif(concat_ws(' ', o.first_name, o.last_name), ''), o.user_name)) AS operator,
       count(*)                                                                AS sessions,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY o.queue_seconds)            AS queue_p50_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY o.acw_seconds)              AS acw_p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY o.acw_seconds)              AS acw_p90_seconds
  FROM mluvii_session_operators o
  JOIN mluvii_sessions s USING (account, session_id)
 WHERE s.created_at IS NOT NULL AND s.source_deleted_at IS NULL
 GROUP BY 1, 2, 3;
COMMENT ON VIEW mluvii_operator_daily IS 'mluvii sessions per operator and day (UTC, by created), with the per-operator queue and ACW times; sessions mluvii deleted are not counted';
