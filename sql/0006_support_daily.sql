-- Daily aggregates for BI dashboards: per day (UTC, by requested_at), source, account and agent.

CREATE VIEW support_daily AS
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
 WHERE s.requested_at IS NOT NULL
 GROUP BY 1, 2, 3, 4;

COMMENT ON VIEW support_daily IS 'Sessions per day (UTC, by requested_at), source, account and agent, with median and p90 wait, handle and after-work times (NULL values are left out of the percentiles)';
COMMENT ON COLUMN support_daily.day IS 'Day of requested_at, in UTC';
COMMENT ON COLUMN support_daily.source IS 'takecontrol, superoffice or mluvii';
COMMENT ON COLUMN support_daily.account IS 'Configured account name';
COMMENT ON COLUMN support_daily.agent IS 'Agent as in support_sessions.agent; (none) when unknown';
COMMENT ON COLUMN support_daily.sessions IS 'Number of sessions';
COMMENT ON COLUMN support_daily.wait_p50_seconds IS 'Median customer wait';
COMMENT ON COLUMN support_daily.wait_p90_seconds IS '90th percentile customer wait';
COMMENT ON COLUMN support_daily.handle_p50_seconds IS 'Median handle time';
COMMENT ON COLUMN support_daily.handle_p90_seconds IS '90th percentile handle time';
COMMENT ON COLUMN support_daily.after_work_p50_seconds IS 'Median after-call work (mluvii)';
COMMENT ON COLUMN support_daily.after_work_p90_seconds IS '90th percentile after-call work (mluvii)';

-- Per mluvii operator and day: the per-operator formulas of seed 002.
CREATE VIEW mluvii_operator_daily AS
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
 WHERE s.created_at IS NOT NULL
 GROUP BY 1, 2, 3;

COMMENT ON VIEW mluvii_operator_daily IS 'mluvii sessions per operator and day (UTC, by created), with the per-operator queue and ACW times';
COMMENT ON COLUMN mluvii_operator_daily.day IS 'Day of the session''s created, in UTC';
COMMENT ON COLUMN mluvii_operator_daily.account IS 'Configured mluvii account name';
COMMENT ON COLUMN mluvii_operator_daily.user_id IS 'Operator userId';
COMMENT ON COLUMN mluvii_operator_daily.operator IS 'Operator''s name';
COMMENT ON COLUMN mluvii_operator_daily.sessions IS 'Sessions the operator took part in';
COMMENT ON COLUMN mluvii_operator_daily.queue_p50_seconds IS 'Median per-operator queue time';
COMMENT ON COLUMN mluvii_operator_daily.acw_p50_seconds IS 'Median per-operator after-call work';
COMMENT ON COLUMN mluvii_operator_daily.acw_p90_seconds IS '90th percentile per-operator after-call work';
